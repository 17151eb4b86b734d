// The connections a listener accepted that have not yet proven the link secret. Each
// costs a thread until its handshake ends, so their number, their time and what they
// write to the log are bounded:
// - at most `perSource` unproven connections from one address: past it, that address's
//   oldest is dropped, so one flooding host only ever competes with itself;
// - at most `maxPending` in all: past it, the oldest connection of the address holding
//   the most is dropped (not the oldest overall, which under a flood would be a distant
//   backup still in its handshake);
// - one still unproven after `deadline` seconds is dropped, whatever it trickles (TLS
//   and the key proof together, not per step);
// - failures before the proof are logged one by one only while a small budget lasts
//   (`logBudget`, refilled at one a second); past it they are counted into one summary
//   line a second, so a flood cannot fill the disk with events.

import AuditTrail
import Foundation
import Node

public final class AdmissionGate: @unchecked Sendable {  // state under `lock`
  public static let defaultMaxPending = 64
  public static let defaultPerSource = 8
  public static let defaultDeadline = 10.0
  /// Failures logged one by one in a burst before they are only counted.
  public static let logBudget = 20.0

  public let maxPending: Int
  public let perSource: Int
  public let deadline: Double
  private let lock = NSLock()
  private var pending: [(ticket: Int, socket: Socket, source: String, since: Double)] = []
  private var dropped: Set<Int> = []
  private var next = 0
  /// What was dropped or failed and not yet logged, the log budget, and the last refill.
  private var unlogged: [(peer: String, why: String)] = []
  private var budget = logBudget
  private var refilled = Clock.monotonicSeconds()
  private var lastSummary = -Double.infinity

  public init(
    maxPending: Int = defaultMaxPending, perSource: Int = defaultPerSource, deadline: Double = defaultDeadline
  ) {
    self.maxPending = maxPending
    self.perSource = perSource
    self.deadline = deadline
  }

  /// The address part of `host:port` or `[v6]:port`.
  static func source(_ peer: String) -> String {
    guard let colon = peer.lastIndex(of: ":") else { return peer }
    return String(peer[..<colon])
  }

  /// Registers a new connection and returns its ticket; past the bounds, an older
  /// unproven connection is shut down (see the top of the file).
  public func admit(_ socket: Socket) -> Int {
    lock.lock()
    defer { lock.unlock() }
    next += 1
    let source = Self.source(socket.peer)
    pending.append((next, socket, source, Clock.monotonicSeconds()))
    if pending.count(where: { $0.source == source }) > perSource {
      drop(from: source, why: "made room for a newer connection from the same address")
    }
    if pending.count > maxPending {
      var counts: [String: Int] = [:]
      for entry in pending { counts[entry.source, default: 0] += 1 }
      let busiest = counts.max { $0.value < $1.value }!.key
      drop(from: busiest, why: "made room for a newer connection")
    }
    return next
  }

  /// Drops `source`'s oldest unproven connection (under `lock`).
  private func drop(from source: String, why: String) {
    guard let index = pending.firstIndex(where: { $0.source == source }) else { return }
    let entry = pending.remove(at: index)
    dropped.insert(entry.ticket)
    entry.socket.shutdown()
    unlogged.append((entry.socket.peer, why))
  }

  /// The connection proved the key: it is no longer counted or timed, and from now on
  /// its end is news, logged as usual.
  public func passed(_ ticket: Int) {
    lock.lock()
    pending.removeAll { $0.ticket == ticket }
    dropped.remove(ticket)
    lock.unlock()
  }

  /// A connection that ended before its proof: `log` runs if the budget allows (and
  /// the gate did not drop it itself, which its own summary says), else it is counted.
  public func failed(_ ticket: Int, peer: String, _ log: () -> Void) {
    let now = Clock.monotonicSeconds()
    lock.lock()
    pending.removeAll { $0.ticket == ticket }
    if dropped.remove(ticket) != nil { return lock.unlock() }
    budget = min(Self.logBudget, budget + (now - refilled))
    refilled = now
    let allowed = budget >= 1
    if allowed {
      budget -= 1
    } else {
      unlogged.append((peer, "failed before proving the key"))
    }
    lock.unlock()
    if allowed { log() }
  }

  /// Forgets a connection whatever its state (its thread is ending).
  public func leave(_ ticket: Int) {
    lock.lock()
    pending.removeAll { $0.ticket == ticket }
    dropped.remove(ticket)
    lock.unlock()
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

  /// Logs what was dropped or only counted since the last summary, at most once a
  /// second: the accept loop calls it each turn.
  public func logDropped(_ events: EventLog) {
    let now = Clock.monotonicSeconds()
    lock.lock()
    guard let first = unlogged.first, now - lastSummary >= 1 else { return lock.unlock() }
    let count = unlogged.count
    unlogged = []
    lastSummary = now
    lock.unlock()
    let more = count > 1 ? " and \(count - 1) more" : ""
    events.log(
      .linkRefused,
      "dropped the unauthenticated connection from \(first.peer)\(more): it \(first.why) (at most \(maxPending) unproven, \(perSource) per address, \(deadline) s each)",
      [("peer", .string(first.peer)), ("count", .int(Int64(count)))])
  }
}
