// A node's daemon (`understudy start --node NODE`) as a child process, for the demo, the
// benchmarks and the tests: started, SIGKILLed as a crash would, or stopped cleanly.

import AuditTrail
import Foundation
import Link
import Node

/// `understudy start --node NODE` as a child process, its stdout and stderr appended to a
/// log file. One still running when the last reference goes is SIGKILLed.
public final class DaemonProcess {
  public let process: Process
  public let node: String
  public let executable: Executable

  /// `log`: where its output goes (default `NODE.log`); a restarted daemon adds to it.
  /// `environment`: laid over this process's. `startTimeout`: if given, returns only once
  /// the daemon holds the node (it logs 9001) or has exited, or after that many seconds:
  /// whoever starts a second daemon at once then finds this one running, not racing it.
  public init(
    executable: Executable, node: String, log: String? = nil, environment: [String: String] = [:],
    startTimeout: Double? = nil
  ) throws {
    self.node = node
    self.executable = executable
    process = executable.process(["start", "--node", node], environment: environment)
    let log = log ?? node + ".log"
    if !FileManager.default.fileExists(atPath: log) { _ = FileManager.default.createFile(atPath: log, contents: nil) }
    let output = FileHandle(forWritingAtPath: log)
    output?.seekToEndOfFile()
    process.standardOutput = output
    process.standardError = output
    let started = { nodeEvents(node).filter { $0["code"] as? Int == EventCode.daemonStarted.rawValue }.count }
    let before = startTimeout.map { _ in started() }
    try process.run()
    if let startTimeout, let before {
      let deadline = Date().addingTimeInterval(startTimeout)
      while process.isRunning && started() == before && Date() < deadline { usleep(5000) }
    }
  }

  public var isRunning: Bool { process.isRunning }

  /// Waits until something accepts connections on 127.0.0.1:`port`.
  public static func waitUntilListening(port: UInt16, timeout: Double = 30) throws {
    let deadline = Clock.monotonicSeconds() + timeout
    while true {
      do {
        try Socket.connect(to: HostPort(parsing: "127.0.0.1:\(port)"), timeout: 1).shutdown()
        return
      } catch {
        if Clock.monotonicSeconds() > deadline { throw error }
        usleep(50_000)
      }
    }
  }

  /// SIGKILL, as a crash would.
  public func kill() {
    Foundation.kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
  }

  /// SIGTERM, and waits until it has exited.
  public func stop() {
    guard process.isRunning else { return }
    Foundation.kill(process.processIdentifier, SIGTERM)
    awaitExit(after: "SIGTERM")
  }

  /// `understudy stop --node NODE`, and waits until it has exited; nil if it was not
  /// running. The outcome is the stop command's.
  public func stopWithCommand() throws -> Outcome? {
    guard process.isRunning else { return nil }
    let outcome = try executable.run(["stop", "--node", node])
    awaitExit(after: "understudy stop")
    return outcome
  }

  /// Waits for the exit a stop asked for; a daemon that has not gone after
  /// `Executable.commandDeadline` is SIGKILLed and named on stdout (a hang in the test
  /// log, not a suite stalled until CI's limit).
  private func awaitExit(after what: String) {
    if waitForExit(process, seconds: Executable.commandDeadline) { return }
    print("HUNG: the daemon of \(node) still runs \(Int(Executable.commandDeadline)) s after \(what); SIGKILLed")
    kill()
  }

  deinit {
    if process.isRunning { kill() }
  }
}
