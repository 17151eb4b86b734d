// What the backup's threads share: how far the image trail is durable (the receiver
// publishes it, the updater waits on it), how far the database is applied, the link's
// state and the primary's newest commit time (for RTD). The daemon writes a snapshot to
// `NODE/state/backup-runtime.json` for `status`.

import AuditTrail
import Foundation
import Node

public final class BackupProgress: @unchecked Sendable {
  private let condition = NSCondition()
  private var state = Snapshot()

  public struct Snapshot: Sendable {
    public var connected = false
    public var acked: MATPosition?
    public var applied: MATPosition?
    public var ackedCommitMicros: Int64 = 0
    public var appliedCommitMicros: Int64 = 0
    public var primaryTrailEnd: MATPosition?
    public var primaryNewestCommitMicros: Int64 = 0
    public var lastError: String?
    public var updaterStopped: String?
    public var copying: Double?
    /// When the receiver last took a whole frame off the link (wall clock), for `status`.
    public var lastFrameMicros: Int64?
    /// Why the updater is waiting to retry (a full disk), while it is.
    public var updaterWaiting: String?
    /// Set while the stream comes from a relay (a backup passing on what it received),
    /// not from the primary itself: that node.
    public var relayedBy: NodeID?
    /// The id of the operator's stop point the updater honours (`updater stop`): its
    /// acknowledgement. Every batch after it is published stops at that point.
    public var updaterStopID: String?
    /// The updater stands at that stop point.
    public var updaterStopReached = false
  }

  public var snapshot: Snapshot {
    condition.lock()
    defer { condition.unlock() }
    return state
  }

  func update(_ change: (inout Snapshot) -> Void) {
    condition.lock()
    change(&state)
    condition.broadcast()
    condition.unlock()
  }

  /// The receiver took a frame: only a time for `status`, so nobody waiting is woken.
  func frameArrived() {
    condition.lock()
    state.lastFrameMicros = Clock.nowMicros()
    condition.unlock()
  }

  /// Waits until the image trail is durable past `position`, or `timeout` passes.
  func waitForAcked(beyond position: MATPosition, timeout: Double) -> MATPosition? {
    condition.lock()
    defer { condition.unlock() }
    let deadline = Date().addingTimeInterval(timeout)
    while (state.acked ?? position) <= position {
      if !condition.wait(until: deadline) { break }
    }
    return state.acked
  }

  /// Relative time delay in seconds of a stage whose newest processed commit is `micros`.
  static func rtd(newest primary: Int64, processed micros: Int64) -> Double {
    guard primary > 0, micros > 0 else { return 0 }
    return max(0, Double(primary - micros) / 1e6)
  }

  static func runtimePath(_ layout: NodeLayout) -> String { layout.state + "/backup-runtime.json" }

  /// For `status` in another process; not synced (it describes a running daemon).
  func writeRuntime(_ layout: NodeLayout) {
    let s = snapshot
    let newest = max(s.primaryNewestCommitMicros, s.ackedCommitMicros)
    let json = JSON.object([
      ("pid", .int(Int64(getpid()))), ("updated", .int(Clock.nowMicros())), ("connected", .bool(s.connected)),
      ("acked", s.acked?.json ?? .null), ("applied", s.applied?.json ?? .null),
      ("primaryTrailEnd", s.primaryTrailEnd?.json ?? .null),
      ("rtdReceiver", .double(Self.rtd(newest: newest, processed: s.ackedCommitMicros))),
      ("rtdUpdater", .double(Self.rtd(newest: newest, processed: s.appliedCommitMicros))),
      ("lastError", s.lastError.map(JSON.string) ?? .null),
      ("updaterStopped", s.updaterStopped.map(JSON.string) ?? .null),
      ("copying", s.copying.map(JSON.double) ?? .null),
      ("lastFrameMicros", s.lastFrameMicros.map { .int($0) } ?? .null),
      ("updaterWaiting", s.updaterWaiting.map(JSON.string) ?? .null),
      ("relayedBy", s.relayedBy.map { .string($0.description) } ?? .null),
      ("updaterStopID", s.updaterStopID.map(JSON.string) ?? .null), ("updaterStopReached", .bool(s.updaterStopReached)),
    ])
    let path = Self.runtimePath(layout)
    let temp = path + ".tmp"
    if FileManager.default.createFile(atPath: temp, contents: Data((json.serialized() + "\n").utf8)) {
      rename(temp, path)
    }
  }
}
