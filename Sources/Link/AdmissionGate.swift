// The connections a listener accepted that have not yet proven the link secret. Each
// costs a thread until its handshake ends, so their number and their time are bounded:
// past `maxPending`, the oldest is dropped to make room (a flood of idle connections
// cannot lock a real backup out), and one still unproven after `deadline` seconds is
// dropped whatever it trickles (TLS and the key proof together, not per step).

import AuditTrail
import Foundation
import Node

public final class AdmissionGate: @unchecked Sendable {  // state under `lock`
  public static let defaultMaxPending = 64
  public static let defaultDeadline = 10.0

  public let maxPending: Int
  public let deadline: Double
  private let lock = NSLock()
  private var pending: [(ticket: Int, socket: Socket, since: Double)] = []
  private var dropped: Set<Int> = []
  private var next = 0

  public init(maxPending: Int = defaultMaxPending, deadline: Double = defaultDeadline) {
    self.maxPending = maxPending
    self.deadline = deadline
  }

  /// Registers a new connection and returns its ticket; past the bound, the oldest
  /// unproven connection is shut down.
  public func admit(_ socket: Socket) -> Int {
    lock.lock()
    defer { lock.unlock() }
    next += 1
    pending.append((next, socket, Clock.monotonicSeconds()))
    while pending.count > maxPending {
      let oldest = pending.removeFirst()
      dropped.insert(oldest.ticket)
      oldest.socket.shutdown()
      unlogged.append((oldest.socket.peer, "made room for a newer connection"))
    }
    return next
  }

  /// The connection proved the key: it is no longer counted or timed.
  public func passed(_ ticket: Int) {
    lock.lock()
    pending.removeAll { $0.ticket == ticket }
    lock.unlock()
  }

  /// Ends a connection's stay, passed or not; true if the gate dropped it (its thread
  /// need not log the failure its handshake then saw).
  public func leave(_ ticket: Int) -> Bool {
    lock.lock()
    defer { lock.unlock() }
    pending.removeAll { $0.ticket == ticket }
    return dropped.remove(ticket) != nil
  }

  /// Drops every connection unproven for longer than `deadline`.
  public func sweep() {
    let now = Clock.monotonicSeconds()
    lock.lock()
    defer { lock.unlock() }
    pending.removeAll { entry in
      guard now - entry.since > deadline else { return false }
      dropped.insert(entry.ticket)
      entry.socket.shutdown()
      unlogged.append((entry.socket.peer, "did not finish TLS and the key proof in time"))
      return true
    }
  }

  /// Unproven connections now.
  public var count: Int {
    lock.lock()
    defer { lock.unlock() }
    return pending.count
  }

  /// Peers dropped and not yet logged, and when the gate last logged.
  private var unlogged: [(peer: String, why: String)] = []
  private var lastLog = -Double.infinity

  /// Logs what was dropped since the last call, at most once a second (a flood must not
  /// flood the log): the accept loop calls it each turn.
  public func logDropped(_ events: EventLog) {
    let now = Clock.monotonicSeconds()
    lock.lock()
    guard let first = unlogged.first, now - lastLog >= 1 else { return lock.unlock() }
    let count = unlogged.count
    unlogged = []
    lastLog = now
    lock.unlock()
    let more = count > 1 ? " and \(count - 1) more" : ""
    events.log(
      .linkRefused,
      "dropped the unauthenticated connection from \(first.peer)\(more): it \(first.why) (at most \(maxPending) wait, \(deadline) s each)",
      [("peer", .string(first.peer)), ("count", .int(Int64(count)))])
  }
}
