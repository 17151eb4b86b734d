// `start` runs a node's daemon in the foreground; `stop` asks it to finish cleanly.

import ArgumentParser
import Backup
import Dispatch
import Foundation
import Node
import Primary
import Procedures

struct Start: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Run the node's daemon in the foreground until SIGTERM, SIGINT or `understudy stop`.",
    discussion:
      "A primary serves its backups on its listen address; a backup runs its receiver, updater and purger (its first start copies the primary's database)."
  )

  @OptionGroup var node: NodeOption

  func run() throws {
    try reporting(json: false) {
      let layout = NodeLayout(root: node.node)
      let config = try layout.loadConfig()
      let lock = try DaemonLock.acquire(layout)
      let events = EventLog(layout: layout, node: config.nodeId.description, echo: true)
      // A switchover changes the node's role under a running daemon: it then goes on
      // in the new role. Signals stop whichever role runs.
      let signals = StopFlag()
      let current = CurrentStop()
      var sources: [DispatchSourceSignal] = []
      for sig in [SIGTERM, SIGINT] {
        signal(sig, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
        source.setEventHandler {
          let why = sig == SIGTERM ? "SIGTERM" : "SIGINT"
          signals.stop(why)
          current.flag.stop(why)
        }
        source.resume()
        sources.append(source)
      }
      var role = config.role
      while true {
        let stop = StopFlag()
        current.flag = stop
        if signals.isSet { break }
        do {
          try Takeover.finishIfDecided(layout)
          try Switchover.finishInterrupted(layout, events: events)
          role = try layout.loadConfig().role
          switch role {
          case .primary: try PrimaryServer(layout: layout, events: events, stop: stop).run()
          case .backup:
            try BackupDaemon(layout: layout, events: events, stop: stop, showProgress: isatty(2) != 0).run()
          }
        } catch {
          events.log(.daemonStopped, "daemon stopped: \(error)")
          throw error
        }
        if signals.isSet { break }
        try Switchover.finishInterrupted(layout, events: events)
        let next = try layout.loadConfig().role
        guard next != role else { break }
        events.log(.daemonStarted, "role changed by a switchover: continuing as \(next)")
      }
      events.log(.daemonStopped, "daemon stopped (\(signals.why ?? current.flag.why ?? "requested"))")
      withExtendedLifetime((lock, sources)) {}
    }
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

/// The stop flag of the role running now, for the signal handlers.
final class CurrentStop: @unchecked Sendable {
  // @unchecked: guarded by `lock`.
  private let lock = NSLock()
  private var value = StopFlag()
  var flag: StopFlag {
    get { lock.withLock { value } }
    set { lock.withLock { value = newValue } }
  }
}
