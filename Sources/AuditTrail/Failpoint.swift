// Crash points for tests and the demo, armed by the environment:
// UNDERSTUDY_FAILPOINT=NAME:N makes the process SIGKILL itself at the N-th time it
// reaches NAME. Unset (always, in production) it costs one branch.
//
//   after-trail-sync   the group's records are durable in the MAT, SQLite has not committed
//   torn-trail-write   half of the group's bytes are written to the MAT, nothing synced
//   rtdr-step          an rtdr operation has run its N-th step (journal still open)
//   follow-rebased     follow tied the database to the new primary's MAT, config unchanged
//   failover-restore-step  a failover restore finished its N-th step (1 decided and held,
//                      2 undone, 3 set aside)
//
// And switches, for paths a test cannot otherwise reach (N is ignored):
//
//   no-inotify           the extractor polls for commits, as where inotify is missing
//   joined-apply-fails   a joined apply of a batch fails after changing its rows
//   slow-roll-over       the MAT writer pauses 100 ms before making a new file, as a slow
//                        disk would while a group's earlier records are already synced

import Foundation

public enum Failpoint {
  private static let armed: (name: String, count: Int)? = {
    guard let spec = ProcessInfo.processInfo.environment["UNDERSTUDY_FAILPOINT"] else { return nil }
    let parts = spec.split(separator: ":")
    guard parts.count == 2, let n = Int(parts[1]), n >= 1 else { return nil }
    return (String(parts[0]), n)
  }()
  private static let lock = NSLock()
  nonisolated(unsafe) private static var hits = 0

  public static func isArmed(_ name: String) -> Bool { armed?.name == name }

  /// What an armed switch throws where it makes something fail.
  public struct Triggered: Error, CustomStringConvertible {
    public let name: String
    public init(_ name: String) { self.name = name }
    public var description: String { "failpoint \(name)" }
  }

  /// Counts a pass through `name` and kills the process if this is the armed one.
  public static func reached(_ name: String) {
    guard let armed, armed.name == name else { return }
    lock.lock()
    hits += 1
    let fire = hits == armed.count
    lock.unlock()
    if fire { kill(getpid(), SIGKILL) }
  }
}
