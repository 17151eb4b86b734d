// `start` runs a node's daemon in the foreground; `stop` asks it to finish cleanly.

import ArgumentParser
import Dispatch
import Foundation
import Link
import Logging
import Node
import Observe
import Procedures

struct Start: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Run the node's daemon in the foreground until SIGTERM, SIGINT or `understudy stop`.",
    discussion:
      "A primary serves its backups on its listen address; a backup runs its receiver, updater and purger (its first start copies the primary's database)."
  )

  @OptionGroup var node: NodeOption
  @Option(
    name: .customLong("metrics"),
    help:
      "Serve Prometheus metrics (/metrics) and health endpoints (/health, /primary, /backup?max_rtd=S) on HOST:PORT ([IPV6]:PORT for IPv6); overrides the config's `metrics`."
  )
  var metricsAddress: String?
  @Option(help: "How the daemon's diagnostic lines on stderr look: text or json (one JSON object a line).")
  var logFormat: LogFormatOption = .text

  enum LogFormatOption: String, ExpressibleByArgument, CaseIterable {
    case text, json
  }

  func run() throws {
    (logFormat == .json ? LogFormat.json : LogFormat.text).bootstrap()
    guard logFormat == .json else { return try reporting(json: false) { try runDaemon() } }
    // JSON lines to the end: the error that stops the daemon is one too.
    do {
      try runDaemon()
    } catch let error as ExitCode {
      throw error
    } catch {
      Logger(label: "understudy").critical("\(error)")
      throw ExitCode(1)
    }
  }

  private func runDaemon() throws {
    do {
      let layout = NodeLayout(root: node.node)
      let config = try layout.loadConfig()
      // Unreadable or public TLS files stop the start here, not the first link later.
      try LinkSecurity(config.tls).check()
      let lock = try DaemonLock.acquire(layout)
      let logger = Logger(label: "understudy")
      // Told once, when the daemon first serves (9001): systemd's Type=notify waits for it.
      let notified = NotifyOnce()
      let events = EventLog(layout: layout, node: config.nodeId.description, echo: true) { event in
        logEvent(logger, event)
        if event.code == EventCode.daemonStarted.rawValue { notified.ready() }
      }
      var observer: ObserveServer?
      if let address = metricsAddress ?? config.metrics {
        observer = try ObserveServer(address: address, layout: layout)
        logger.info("serving metrics and health on http://\(address)/metrics")
      }
      let daemon = NodeDaemon(
        layout: layout, events: events, showProgress: isatty(2) != 0 && logFormat == .text)
      var sources: [DispatchSourceSignal] = []
      for sig in [SIGTERM, SIGINT] {
        signal(sig, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
        source.setEventHandler { daemon.stop(sig == SIGTERM ? "SIGTERM" : "SIGINT") }
        source.resume()
        sources.append(source)
      }
      defer {
        SystemdNotify.send("STOPPING=1")
        observer?.stop()
      }
      try daemon.run()
      withExtendedLifetime((lock, sources)) {}
    }
  }
}

/// Sends READY=1 to systemd (when NOTIFY_SOCKET is set) the first time only.
private final class NotifyOnce: @unchecked Sendable {
  // @unchecked: guarded by `lock`.
  private let lock = NSLock()
  private var sent = false

  func ready() {
    let first: Bool = lock.withLock {
      defer { sent = true }
      return !sent
    }
    if first { SystemdNotify.send("READY=1\nSTATUS=serving") }
  }
}

struct Stop: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Stop the node's daemon cleanly and wait until it has.")

  @OptionGroup var node: NodeOption
  @Option(help: "Seconds to wait for the daemon to finish.")
  var timeout: Double = 60

  func run() throws {
    try reporting(json: false) {
      let layout = NodeLayout(root: node.node)
      _ = try layout.loadConfig()
      let pid = try DaemonLock.stop(layout, timeout: timeout)
      Output.line("stopped the daemon of \(node.node) (pid \(pid))")
    }
  }
}
