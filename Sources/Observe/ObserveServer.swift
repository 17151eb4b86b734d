// `start --metrics HOST:PORT`: one HTTP server (FlyingFox) beside the daemon serving
// `/metrics` and the health endpoints. It runs on its own task and only reads the node's
// files, so a slow or broken scraper never holds up replication.

import FlyingFox
import FlyingSocks
import Foundation
import Node

public struct ObserveError: Error, CustomStringConvertible {
  public var address: String
  public var reason: String
  public var description: String { "cannot serve metrics on \(address): \(reason)" }
}

public final class ObserveServer: Sendable {
  public let address: String
  private let server: HTTPServer
  private let task: Task<Void, Never>

  /// Binds `address` (`IPV4:PORT`, `[IPV6]:PORT` or `localhost:PORT`) and serves until `stop`;
  /// throws at once, naming the address, when it is malformed or cannot be bound.
  public init(address text: String, layout: NodeLayout) throws {
    address = text
    let hostPort: HostPort
    do { hostPort = try HostPort(parsing: text) } catch {
      throw ObserveError(address: text, reason: "expected HOST:PORT with a port from 1 to 65535")
    }
    let ip = hostPort.host == "localhost" ? "127.0.0.1" : hostPort.host
    let server: HTTPServer
    do {
      server =
        ip.contains(":")
        ? HTTPServer(address: try sockaddr_in6.inet6(ip6: ip, port: hostPort.port), logger: DisabledLogger.disabled)
        : HTTPServer(address: try sockaddr_in.inet(ip4: ip, port: hostPort.port), logger: DisabledLogger.disabled)
    } catch {
      throw ObserveError(
        address: text, reason: "the host must be an IP address (such as 127.0.0.1, 0.0.0.0, [::1] or [::])")
    }
    let metrics = NodeMetrics(layout: layout)
    self.server = server
    let started = StartResult()
    task = Task {
      await ObserveServer.routes(server, metrics)
      let listening = Task {
        try? await server.waitUntilListening(timeout: 10)
        started.set(nil)
      }
      do { try await server.run() } catch { started.set(error) }
      listening.cancel()
    }
    if let error = started.wait(seconds: 15) {
      task.cancel()
      throw ObserveError(address: text, reason: "\(error)")
    }
  }

  public func stop() {
    let server = server
    let done = DispatchSemaphore(value: 0)
    Task {
      await server.stop(timeout: 1)
      done.signal()
    }
    _ = done.wait(timeout: .now() + 3)
  }

  private static func answer(_ a: HealthAnswer) -> HTTPResponse {
    HTTPResponse(
      statusCode: HTTPStatusCode(
        a.status, phrase: a.status == 200 ? "OK" : a.status == 400 ? "Bad Request" : "Service Unavailable"),
      headers: [.contentType: "application/json"], body: Data(a.body.utf8))
  }

  private static func routes(_ server: HTTPServer, _ metrics: NodeMetrics) async {
    await server.appendRoute("GET /metrics") { _ in
      do {
        let text = try metrics.scrape()
        return HTTPResponse(
          statusCode: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"], body: Data(text.utf8))
      } catch {
        return answer(HealthAnswer(status: 503, reason: "status unreadable: \(error)", role: nil))
      }
    }
    await server.appendRoute("GET /health") { _ in answer(Health.health { try metrics.snapshot() }) }
    await server.appendRoute("GET /primary") { _ in answer(Health.primary { try metrics.snapshot() }) }
    await server.appendRoute("GET /backup") { request in
      let maxRTD = request.query.first { $0.name == "max_rtd" }?.value
      return answer(Health.backup(maxRTD: maxRTD) { try metrics.snapshot() })
    }
  }
}

/// The first outcome of starting: listening (nil) or the error that stopped it.
private final class StartResult: @unchecked Sendable {
  // @unchecked: guarded by `lock`.
  private let lock = NSLock()
  private let ready = DispatchSemaphore(value: 0)
  private var outcome: (any Error)??

  func set(_ error: (any Error)?) {
    let first: Bool = lock.withLock {
      guard outcome == nil else { return false }
      outcome = .some(error)
      return true
    }
    if first { ready.signal() }
  }

  func wait(seconds: Double) -> (any Error)? {
    if ready.wait(timeout: .now() + seconds) == .timedOut {
      return ObserveError(address: "", reason: "not listening after \(seconds) s")
    }
    return lock.withLock { outcome! }
  }
}
