// `start` runs a node's daemon in the foreground; `stop` asks it to finish cleanly.

import ArgumentParser
import Dispatch
import Foundation
import Link
import Node
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
      // Unreadable or public TLS files stop the start here, not the first link later.
      try LinkSecurity(config.tls).check()
      let lock = try DaemonLock.acquire(layout)
      let events = EventLog(layout: layout, node: config.nodeId.description, echo: true)
      let daemon = NodeDaemon(layout: layout, events: events, showProgress: isatty(2) != 0)
      var sources: [DispatchSourceSignal] = []
      for sig in [SIGTERM, SIGINT] {
        signal(sig, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
        source.setEventHandler { daemon.stop(sig == SIGTERM ? "SIGTERM" : "SIGINT") }
        source.resume()
        sources.append(source)
      }
      try daemon.run()
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
