// The primary's side of a streaming link as a plain state machine: what the extractor's
// thread learns goes in (the database's committed end, each record read, damage seen,
// each message from the backup, the clock) and decisions come out (take the record or
// refuse the backup, give up on damage, look past the committed end, hand over in a
// switchover, how long to wait). The thread only reads the trail and the database, sends
// and waits.
//
// Batching follows the load: there is no gather wait. After a send the extractor looks
// again at once; what committed while it was sending is the next batch. Only with
// nothing to send does it wait (for a commit, an ack, or the next look past the
// committed end).

import AuditTrail
import Node

public struct ExtractorStateMachine {
  public struct Timing: Sendable {
    /// How long a bad record may stay bad before it is corruption rather than a write in progress.
    public var corruptionGrace: Double
    /// How long a record may wait for its COMMIT before the extractor syncs it itself.
    public var commitGrace: Double
    /// How often to look for commits where the database's directory cannot be watched.
    public var pollInterval: Double
    /// How long after a send the next one waits at least: under a steady stream of
    /// commits, one send (and one backup fsync and ack) per this much, not per commit.
    /// Idle, a commit goes out at once.
    public var sendSpacing: Double

    public init(corruptionGrace: Double, commitGrace: Double, pollInterval: Double, sendSpacing: Double = 0) {
      self.corruptionGrace = corruptionGrace
      self.commitGrace = commitGrace
      self.pollInterval = pollInterval
      self.sendSpacing = sendSpacing
    }
  }

  /// What to do with a record read from the trail.
  public enum RecordVerdict: Equatable {
    case take
    /// The backup's trail does not continue this one: refuse it with this reason.
    case refuse(String)
  }

  /// What to do with a message from the backup.
  public enum Incoming: Equatable {
    /// Report the backup's positions.
    case acked(acked: MATPosition, applied: MATPosition)
    /// The backup has become the primary; its MAT starts here. The stream ends.
    case promoted(matStart: MATPosition)
    /// A frame the protocol does not allow here: refuse the backup with this reason.
    case refuse(String)
  }

  public let timing: Timing
  /// How far the trail is durable and may travel.
  public private(set) var durable: MATPosition
  /// The backup's last ack of its applied position.
  public private(set) var applied: MATPosition?
  /// Whether this backup has been told to become the primary.
  public private(set) var promoteSent = false
  /// The checksum the first record must continue (the backup's last record's), until it has.
  private var expectedPrev: UInt32?
  private var badSince: Double?
  /// When `durable` last moved, or the extractor last looked past it.
  private var lastAdvance: Double

  public init(from: MATPosition, lastCRC: UInt32?, now: Double, timing: Timing) {
    durable = from
    expectedPrev = lastCRC
    lastAdvance = now
    self.timing = timing
  }

  /// The database's committed end, as looked up at the top of a turn.
  public mutating func committed(_ end: MATPosition?, now: Double) {
    if let end, end > durable {
      durable = end
      lastAdvance = now
    }
  }

  /// A whole record read from the trail.
  public mutating func read(_ r: PositionedRecord) -> RecordVerdict {
    badSince = nil
    if let prev = expectedPrev, r.record.prevCRC != prev {
      return .refuse(
        "the backup's image trail does not match this primary's MAT before \(r.position); the backup needs a full copy")
    }
    expectedPrev = nil  // the reader checks the chain from here on
    return .take
  }

  /// The trail reads as damaged; a reader can see a write in progress, so it is
  /// corruption only once it stays so past the grace. Returns whether to give up.
  public mutating func damaged(now: Double) -> Bool {
    if badSince == nil { badSince = now }
    return now - badSince! > timing.corruptionGrace
  }

  /// Whether to look for a record past the committed end (its writer may have died
  /// between the MAT sync and the COMMIT): only with nothing else to send, and once the
  /// committed end has not moved for the grace.
  public mutating func shouldLookPastCommitted(batchIsEmpty: Bool, now: Double) -> Bool {
    guard batchIsEmpty, now - lastAdvance >= timing.commitGrace else { return false }
    lastAdvance = now
    return true
  }

  /// A record past the committed end was synced under the write lock: durable to its end.
  public mutating func syncedPastCommitted(end: MATPosition) { durable = end }

  /// How long to wait for the backup (or a commit) after a turn. After a send, not at
  /// all: what committed meanwhile goes out next. With nothing sent, until a commit
  /// (when the directory is watched) or the next look past the committed end.
  public func wait(sent: Bool, watchingCommits: Bool) -> Double {
    sent ? timing.sendSpacing : (watchingCommits ? timing.commitGrace : timing.pollInterval)
  }

  /// A message from the backup while streaming.
  public mutating func received(_ message: Message) -> Incoming {
    switch message {
    case .ack(let acked, let appliedNow):
      applied = appliedNow
      return .acked(acked: acked, applied: appliedNow)
    case .promoted(let start) where promoteSent:
      return .promoted(matStart: start)
    case let other:
      return .refuse("unexpected \(other.type) frame while streaming")
    }
  }

  /// A committed switchover names this backup and its record ends at `end`: whether to
  /// send the promote now (once, after the backup has applied exactly that far).
  public mutating func shouldPromote(end: MATPosition) -> Bool {
    guard !promoteSent, applied == end else { return false }
    promoteSent = true
    return true
  }
}
