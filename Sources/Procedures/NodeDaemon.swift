// A node's daemon: the loop behind `understudy start`. It owns the node's role while it
// runs: finishes a decided takeover or an interrupted switchover, runs the node as a
// primary (PrimaryServer) or a backup (BackupDaemon), goes on in the new role when a
// switchover changes it, and ends when asked to stop. The caller owns the daemon lock,
// the event log and the signals.

import Backup
import Foundation
import Node
import Primary

public final class NodeDaemon: Sendable {
  public let layout: NodeLayout
  public let events: EventLog
  private let showProgress: Bool
  /// Set by `stop`: no role starts after it.
  private let requested = StopFlag()
  /// The stop flag of the role running now.
  private let current = CurrentStop()

  /// `showProgress`: a backup draws its progress on stderr (a terminal).
  public init(layout: NodeLayout, events: EventLog, showProgress: Bool) {
    self.layout = layout
    self.events = events
    self.showProgress = showProgress
  }

  /// Asks the running role to finish and the loop to end; `why` goes into the 706 event.
  /// Safe from any thread (a signal handler's queue).
  public func stop(_ why: String) {
    requested.stop(why)
    current.flag.stop(why)
  }

  /// Runs the node in its role until `stop`, or until a role ends without a switchover
  /// having changed it. A role that fails is logged (706) and its error thrown.
  public func run() throws {
    while true {
      let stop = StopFlag()
      current.flag = stop
      if requested.isSet { break }
      let role: Role
      do {
        try Takeover.finishIfDecided(layout)
        try Switchover.finishInterrupted(layout, events: events)
        // A new primary's hint, taken in by the last run of the backup (or left by a
        // daemon killed before it acted): follow it now, or say why not.
        if try layout.loadConfig().role == .backup { _ = FollowNewPrimary.takeHint(layout, events: events) }
        role = try layout.loadConfig().role
        switch role {
        case .primary: try PrimaryServer(layout: layout, events: events, stop: stop).run()
        case .backup:
          try BackupDaemon(layout: layout, events: events, stop: stop, showProgress: showProgress).run()
        }
      } catch {
        events.log(.daemonStopped, "daemon stopped: \(error)")
        throw error
      }
      if requested.isSet { break }
      try Switchover.finishInterrupted(layout, events: events)
      // A backup stopped by a follow hint runs again, following the new primary or not.
      if role == .backup, (try? FollowHintFile.read(layout)) != nil { continue }
      let next = try layout.loadConfig().role
      guard next != role else { break }
      events.log(.daemonStarted, "role changed by a switchover: continuing as \(next)")
    }
    events.log(.daemonStopped, "daemon stopped (\(requested.why ?? current.flag.why ?? "requested"))")
  }
}

/// The stop flag of the role running now, for `stop` from another thread.
private final class CurrentStop: @unchecked Sendable {
  // @unchecked: guarded by `lock`.
  private let lock = NSLock()
  private var value = StopFlag()
  var flag: StopFlag {
    get { lock.withLock { value } }
    set { lock.withLock { value = newValue } }
  }
}
