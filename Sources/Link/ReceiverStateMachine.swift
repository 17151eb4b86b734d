// The backup's side of a streaming link as a plain state machine: messages from the
// primary go in, and what to do comes out (write to the image trail, take a promotion,
// note a heartbeat, refuse), then, between frames, whether to sync and acknowledge. The
// receiver's thread only carries the actions out.
//
// Syncs follow the load as group commit does: the receiver reads everything that has
// arrived without waiting, writes it, and syncs once nothing more is waiting (or the
// unsynced bytes reach `syncBytes`); whatever arrives while that sync runs is the next
// group. An ack always follows its sync and covers only what that sync made durable.

import AuditTrail
import Node

public struct ReceiverStateMachine {
  /// What to do with a message from the primary.
  public enum Action: Equatable {
    /// The stream enters a new image-trail file.
    case beginFile(header: [UInt8], size: Int)
    /// Records to write at exactly this position.
    case append(position: MATPosition, bytes: [UInt8])
    /// The primary's handover in a switchover: become the primary of `generation`.
    case promote(generation: Generation, end: MATPosition)
    /// Where the primary's durable trail ends, and its newest commit time (for RTD).
    case heartbeat(trailEnd: MATPosition, newestCommitMicros: Int64)
    /// A frame the protocol does not allow here: the link ends with this reason.
    case badFrame(reason: String)
  }

  /// What to do between frames.
  public enum Step: Equatable {
    /// Receive the next frame.
    case receive
    /// Sync now, then call `synced`.
    case sync
    /// Sync unless more bytes are already waiting (then call `moreArriving`, or sync).
    case syncUnlessMoreArriving
    /// Nothing unsynced, but the updater moved on: send `ack(acked: the image end, applied:)`.
    case ack(applied: MATPosition)
  }

  public let syncBytes: Int
  /// Bytes written to the image trail and not yet synced.
  public private(set) var unsynced = 0
  /// The applied position the last ack carried.
  public private(set) var lastSentApplied: MATPosition?

  public init(syncBytes: Int) {
    self.syncBytes = syncBytes
  }

  /// A message from the primary, whole and decoded.
  public func received(_ message: Message) -> Action {
    switch message {
    case .fileStart(let header, let size): .beginFile(header: header, size: Int(size))
    case .records(let position, let bytes): .append(position: position, bytes: bytes)
    case .promote(let generation, let end): .promote(generation: generation, end: end)
    case .heartbeat(let end, let newest, _): .heartbeat(trailEnd: end, newestCommitMicros: newest)
    default: .badFrame(reason: "unexpected \(message.type) frame while streaming")
    }
  }

  /// `count` bytes of records were written to the image trail (not yet synced).
  public mutating func wrote(_ count: Int) { unsynced += count }

  /// A frame has been handled; `applied` is the updater's position now.
  public mutating func frameHandled(applied: MATPosition?) -> Step {
    if unsynced >= syncBytes { return .sync }
    if unsynced > 0 { return .syncUnlessMoreArriving }
    if let applied, applied != lastSentApplied {
      // The updater moved on since the last ack: the primary waits on it in a switchover.
      lastSentApplied = applied
      return .ack(applied: applied)
    }
    return .receive
  }

  /// The answer to `.syncUnlessMoreArriving`: whether bytes are already waiting.
  public func moreArriving(_ waiting: Bool) -> Step { waiting ? .receive : .sync }

  /// The image trail is synced up to `end`; the ack to send (it never runs ahead of a sync).
  public mutating func synced(end: MATPosition, applied: MATPosition?) -> Message {
    unsynced = 0
    let applied = applied ?? end
    lastSentApplied = applied
    return .ack(acked: end, applied: applied)
  }
}
