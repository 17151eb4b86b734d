// The backup's daemon: receiver, updater and purger, until stopped. On stop the
// receiver syncs what it wrote, the updater finishes its batch, and the purger records
// the safe position last.

import AuditTrail
import Foundation
import Node

public final class BackupDaemon: @unchecked Sendable {
  public let layout: NodeLayout
  let config: NodeConfig
  let events: EventLog
  let stop: StopFlag
  let showProgress: Bool
  public let progress = BackupProgress()

  public init(layout: NodeLayout, events: EventLog, stop: StopFlag, showProgress: Bool) throws {
    self.layout = layout
    self.config = try layout.loadConfig()
    self.events = events
    self.stop = stop
    self.showProgress = showProgress
    guard config.role == .backup else {
      throw NodeError.wrongRole(node: layout.root, role: config.role, needed: .backup, command: "the backup daemon")
    }
  }

  public func run() throws {
    let receiver = try Receiver(
      layout: layout, events: events, stop: stop, progress: progress, showProgress: showProgress)
    let updater = Updater(layout: layout, database: config.database, events: events, stop: stop, progress: progress)
    let purger = try Purger(layout: layout, retention: config.retention, events: events)
    let relay = try Relay(layout: layout, events: events, stop: stop, progress: progress)
    let queries = QueryListener(
      layout: layout, config: config, events: events, stop: stop, progress: progress, relay: relay)
    events.log(
      .daemonStarted, "backup daemon started; primary \(config.primary ?? "?"), context '\(config.contextName)'")
    // A failover restore rolled the replica back (or is about to): neither receive what
    // it set aside again nor apply what the image trail held past its target.
    var threads = [("receiver", receiver.run), ("updater", updater.run), ("queries", queries.run)]
    if let hold = try ReceiveHold.current(layout, generation: config.generation) {
      threads.removeFirst(2)
      progress.update {
        $0.lastError = "held: \(hold.reason)"
        $0.updaterStopped = "held: \(hold.reason)"
      }
      events.log(.receivingHeld, "receiver and updater not started: \(hold.reason)", [("position", hold.position.json)])
    }
    // On its own thread: its fsyncs (the safe position, a purged directory) must not hold
    // up the runtime state `status` reads, which a slow disk held for seconds.
    threads.append(
      (
        "purger",
        { [stop, events] in
          while !stop.isSet {
            do {
              try purger.tick(applied: self.progress.snapshot.applied, relayed: try relay.record())
            } catch {
              events.log(.fileError, "the purger could not record the safe position: \(error)")
            }
            stop.sleep(1)
          }
        }
      ))
    let done = DispatchGroup()
    for (name, body) in threads {
      done.enter()
      let thread = Thread {
        body()
        done.leave()
      }
      thread.name = name
      thread.start()
    }
    while !stop.isSet {
      progress.writeRuntime(layout)
      stop.sleep(0.25)
    }
    _ = done.wait(timeout: .now() + 30)
    try purger.tick(applied: progress.snapshot.applied, relayed: try relay.record())
    progress.update { $0.connected = false }
    progress.writeRuntime(layout)
  }
}
