// Takeover: the backup becomes the primary when its primary is lost. It applies every
// whole committed transaction its image trail holds, states where it stands (735, and
// 888 with the file-recovery position or 858 and why there is none), then starts the
// next generation with a fresh MAT segment of its own and accepts writes.
//
// The decision is written to `state/takeover.json` before anything changes roles; a
// takeover killed at any step and run again finishes from there and reports the same.

import Apply
import AuditTrail
import Backup
import Foundation
import Link
import Node
import Primary
import SQLiteSupport

public struct TakeoverResult: Codable, Sendable, Equatable {
  public var generation: Generation
  /// Every transaction whose commit record lies before it is applied.
  public var safe: MATPosition
  /// The file-recovery position (888), or nil with `reason` (858).
  public var fileRecovery: MATPosition?
  public var reason: String?
  /// The logical checksum of the database at the takeover point.
  public var checksum: String
  /// Transactions applied from the image trail by the takeover itself.
  public var applied: Int
  public var lastTxid: TransactionID
  /// Where this node's own MAT starts in the new generation.
  public var matStart: MATPosition
  public var listen: String?

  public var json: JSON {
    let recovery: JSON =
      if let p = fileRecovery {
        .object([("available", .bool(true)), ("sno", .int(Int64(p.sno))), ("rba", .int(Int64(p.rba)))])
      } else {
        .object([("available", .bool(false)), ("reason", .string(reason ?? ""))])
      }
    return .object([
      ("generation", .int(Int64(generation.rawValue))), ("safe", safe.json), ("fileRecovery", recovery),
      ("checksum", .string(checksum)), ("applied", .int(Int64(applied))), ("lastTxid", .int(Int64(lastTxid.rawValue))),
      ("matStart", matStart.json), ("listen", listen.map(JSON.string) ?? .null),
    ])
  }
}

public enum TakeoverError: Error, CustomStringConvertible {
  case primaryReachable(node: String, primary: String, how: String)
  case noDatabase(node: String, database: String)
  case anotherTakeover(node: String, pid: Int32?, seconds: Double)
  case lockFile(path: String, reason: String)

  public var description: String {
    switch self {
    case .primaryReachable(let node, let primary, let how):
      "refusing takeover on \(node): its primary \(primary) is not lost (\(how)). Takeover with a live primary makes two primaries; if you mean it, run `understudy takeover --node \(node) --force`, or use `understudy switchover` on the primary"
    case .noDatabase(let node, let database):
      "node \(node) cannot take over: it has no database yet (\(database)); its initial copy never finished"
    case .lockFile(let path, let reason): "takeover lock \(path): \(reason)"
    case .anotherTakeover(let node, let pid, let seconds):
      "another takeover of \(node) is running\(pid.map { " (pid \($0))" } ?? "") and did not finish within \(Int(seconds)) s; wait for it, or run `understudy takeover --node \(node)` again once it has ended (re-running is safe and gives the same answer)"
    }
  }
}

public enum Takeover {
  struct Journal: Codable {
    var phase: String  // "decided", then "complete"
    var result: TakeoverResult
    var base: NodeConfig.GenerationBase
    /// 735 and 888 (or 858 and the 823s) are in the event log. A takeover killed between
    /// writing the decision and logging it logs it when run again.
    var logged: Bool?
  }

  static func journalPath(_ layout: NodeLayout) -> String { layout.state + "/takeover.json" }

  /// `waiting` hears, once, that another takeover of the node runs and this one waits for it.
  public static func run(
    node: String, force: Bool, progress: (String) -> Void = { _ in }, waiting: (String) -> Void = { _ in }
  ) throws -> TakeoverResult {
    let layout = NodeLayout(root: node)
    _ = try layout.loadConfig()  // a node that is not one fails here, before any lock file is made
    // One takeover of a node at a time, from before it reads the node's role: a second one
    // started meanwhile would signal the first (it holds the daemon lock, whose pid file then
    // names it) or, once the first is done, take over the new primary again. It waits,
    // then finds the first one's answer in the journal.
    let exclusive = try TakeoverLock.acquire(layout, waiting: waiting)
    defer { withExtendedLifetime(exclusive) {} }
    var config = try layout.loadConfig()
    let events = EventLog(layout: layout, node: config.nodeId.description)
    if let journal = try StateFile.read(Journal.self, at: journalPath(layout)), journal.phase == "complete",
      config.role == .primary, config.generation == journal.base.generation
    {
      return journal.result
    }
    if let journal = try unfinished(layout, config) {  // killed after deciding: finish the same way
      _ = try DaemonLock.stopIfRunning(layout)
      let lock = try DaemonLock.acquire(layout)
      defer { withExtendedLifetime(lock) {} }
      return try finish(layout, journal, events: events)
    }
    guard config.role == .backup else {
      throw NodeError.wrongRole(node: node, role: config.role, needed: .backup, command: "takeover")
    }
    // Its drain would apply what the restore is undoing (the records are set aside last).
    if try FailoverRestore.unfinished(layout, config) != nil {
      throw FailoverRestoreError.takeoverBehindRestore(node: node)
    }
    guard FileManager.default.fileExists(atPath: config.database) else {
      throw TakeoverError.noDatabase(node: node, database: config.database)
    }
    if !force { try checkPrimaryLost(layout, config) }
    if let pid = try DaemonLock.stopIfRunning(layout) { progress("stopped the backup daemon (pid \(pid))") }
    let lock = try DaemonLock.acquire(layout)
    defer { withExtendedLifetime(lock) {} }
    config = try layout.loadConfig()
    guard config.role == .backup else {
      throw NodeError.wrongRole(node: node, role: config.role, needed: .backup, command: "takeover")
    }
    events.log(
      .takeoverStarted, "takeover: primary \(config.primary ?? "?") is lost; applying the image trail",
      [("generation", .int(Int64(config.generation.rawValue)))])

    progress("applying what the image trail holds")
    let (applied, state) = try Updater.drain(image: layout.image, database: config.database, events: events)
    let db = try Connection(path: config.database, mode: .readOnly)
    let checksum = try DatabaseChecksum.current(db).checksum
    let skipped = try Resolve.skipped(db)
    let matStart = try Promotion.freshSegment(layout, after: state.end)
    let generation = config.generation.next
    var result = TakeoverResult(
      generation: generation, safe: state.end, fileRecovery: nil, reason: nil, checksum: checksum, applied: applied,
      lastTxid: state.lastTxid, matStart: matStart, listen: config.listen)
    if let first = skipped.first {
      result.reason =
        "transaction \(first.txid) (commit record at \(first.position)) was skipped on this backup by `understudy resolve --skip`, so it holds no prefix of the MAT"
    } else {
      result.fileRecovery = state.end
    }
    let journal = Journal(
      phase: "decided", result: result,
      base: .init(
        generation: generation, matStart: matStart, priorNode: state.nodeID, priorTxid: state.lastTxid,
        priorEnd: state.end, checksum: checksum, fileRecovery: result.fileRecovery, noFileRecovery: result.reason))
    try StateFile.write(journal, to: journalPath(layout))
    return try finish(layout, journal, events: events)
  }

  /// Logs the decision: 735, then 888, or 858 with an 823 for each commit kept after a
  /// skipped transaction (listed while the database still follows the old primary).
  static func logDecision(_ layout: NodeLayout, _ journal: Journal, events: EventLog) throws {
    let result = journal.result
    events.log(
      .safePosition, "safe MAT position SNO \(result.safe.sno) RBA \(result.safe.rba)", [("safe", result.safe.json)])
    if let p = result.fileRecovery {
      events.log(
        .fileRecoveryPosition,
        "file recovery MAT position SNO \(p.sno) RBA \(p.rba); database checksum \(result.checksum)",
        [
          ("position", p.json), ("checksum", .string(result.checksum)),
          ("txid", .int(Int64(result.lastTxid.rawValue))),
        ])
      return
    }
    events.log(
      .noFileRecoveryPosition, "no file recovery MAT position: \(result.reason ?? "")",
      [("reason", .string(result.reason ?? ""))])
    let config = try layout.loadConfig()
    let db = try Connection(path: config.database, mode: .readOnly)
    guard try CommitState.read(db).nodeID == journal.base.priorNode else { return }
    for kept in try Resolve.keptAfterSkip(db, image: layout.image, skipped: try Resolve.skipped(db)) {
      events.log(
        .keptCommit, "kept commit of transaction \(kept.txid) at SNO \(kept.position.sno) RBA \(kept.position.rba)",
        [("txid", .int(Int64(kept.txid.rawValue))), ("position", kept.position.json)])
    }
  }

  /// A takeover decided but cut short finishes before the daemon starts: otherwise the
  /// backup could apply more and no longer be where its 888 said it was.
  public static func finishIfDecided(_ layout: NodeLayout) throws {
    let config = try layout.loadConfig()
    guard let journal = try unfinished(layout, config) else { return }
    _ = try finish(layout, journal, events: EventLog(layout: layout, node: config.nodeId.description))
  }

  /// This node's takeover decision, when it is not finished: still a backup of the
  /// generation before it, or promoted but not yet marked complete.
  static func unfinished(_ layout: NodeLayout, _ config: NodeConfig) throws -> Journal? {
    guard let journal = try StateFile.read(Journal.self, at: journalPath(layout)), journal.phase != "complete"
    else { return nil }
    let decided = config.role == .backup && config.generation.next == journal.base.generation
    let promoted = config.role == .primary && config.generation == journal.base.generation
    return decided || promoted ? journal : nil
  }

  /// From a written decision to the end: promote, log 724, mark the journal complete.
  static func finish(_ layout: NodeLayout, _ decided: Journal, events: EventLog) throws -> TakeoverResult {
    var journal = decided
    if journal.logged != true {
      try logDecision(layout, journal, events: events)
      journal.logged = true
      try StateFile.write(journal, to: journalPath(layout))
    }
    try Promotion.promote(layout, to: journal.base)
    if journal.phase != "complete" {
      events.log(
        .takeoverComplete,
        "takeover complete: generation \(journal.base.generation) with its own MAT from \(journal.base.matStart); accepting writes",
        [
          ("generation", .int(Int64(journal.base.generation.rawValue))), ("position", journal.base.matStart.json),
        ])
      journal.phase = "complete"
      try StateFile.write(journal, to: journalPath(layout))
    }
    return journal.result
  }

  /// How long a link the daemon shows as up may take to show as down before the primary
  /// counts as answering.
  static let linkDownGrace = 2.0
  /// How long the link must show as down, without a break, before the primary counts as
  /// lost: a live primary's link that drops for a moment is back (the receiver retries
  /// after 0.1 s, and the daemon publishes every 0.25 s) well within it.
  static let linkDownFor = 1.0

  enum DaemonLink: Equatable {
    case up(relayedBy: NodeID?)
    case down
    case daemonGone
  }

  /// What the running daemon says of its link, read until it is clear. The daemon
  /// publishes its state every 0.25 s, after its receiver has seen the link close: a
  /// primary stopped a moment ago can still read as up (CI saw a takeover refused so),
  /// so an up link gets `linkDownGrace` to go down; a down one must stay down for
  /// `linkDownFor`. A relay's link is judged at once (the primary behind it is asked).
  static func daemonLink(_ layout: NodeLayout) throws -> DaemonLink {
    let start = Clock.monotonicSeconds()
    var downSince: Double?
    while true {
      guard DaemonLock.isHeld(layout) else { return .daemonGone }
      let link = try BackupStatus.link(layout)
      let now = Clock.monotonicSeconds()
      if link.connected {
        downSince = nil
        if link.relayedBy != nil || now - start >= linkDownGrace { return .up(relayedBy: link.relayedBy) }
      } else {
        if downSince == nil { downSince = now }
        if now - downSince! >= linkDownFor { return DaemonLock.isHeld(layout) ? .down : .daemonGone }
      }
      usleep(100_000)
    }
  }

  /// Refuses when the primary still answers: through the running daemon's link, or a
  /// probe of its address when no daemon runs. A backup fed by a relay (a cascade) asks
  /// about the primary behind it: the relay answering is not the primary answering.
  static func checkPrimaryLost(_ layout: NodeLayout, _ config: NodeConfig) throws {
    let primary = config.primary ?? "?"
    let me = LinkIdentity(config, key: try Secret.load(path: layout.secretKey))
    if DaemonLock.isHeld(layout) {
      switch try daemonLink(layout) {
      case .down: return
      case .daemonGone: break  // ask the primary's address, as when no daemon runs
      case .up(relayedBy: nil):
        throw TakeoverError.primaryReachable(
          node: layout.root, primary: primary, how: "the backup daemon's link to it is up")
      case .up(relayedBy: let relay?):
        if let how = primaryAnswers(behind: primary, as: me) {
          throw TakeoverError.primaryReachable(
            node: layout.root, primary: primary, how: "the daemon streams from relay \(relay), and \(how)")
        }
        return
      }
    }
    guard let address = try? HostPort(parsing: primary) else { return }
    let probed: LinkPeer
    do {
      probed = try Handshake.probe(address, as: me, reason: "takeover check: is the primary alive?", timeout: 2)
    } catch LinkError.tls(_, let reason) {
      // Something accepted the connection and spoke TLS (or tried): an expired or
      // rotated certificate on a live primary must not read as a lost one.
      throw TakeoverError.primaryReachable(
        node: layout.root, primary: primary, how: "it accepts connections but the TLS handshake failed (\(reason))")
    } catch {
      return
    }
    guard probed.generation <= config.generation else { return }
    let peer = probed
    guard peer.isRelay else {
      throw TakeoverError.primaryReachable(
        node: layout.root, primary: primary, how: "it answered a handshake as node \(peer.nodeID)")
    }
    if let how = primaryAnswers(behind: primary, as: me) {
      throw TakeoverError.primaryReachable(
        node: layout.root, primary: primary, how: "it is relay \(peer.nodeID), and \(how)")
    }
  }

  /// Whether the primary behind the relay at `relay` (and any relays between) answers a
  /// handshake in this backup's generation or an older one; how, if it does.
  static func primaryAnswers(behind relay: String, as me: LinkIdentity) -> String? {
    guard let (at, answer) = Handshake.findPrimary(from: relay, as: me, timeout: 2),
      answer.generation <= me.generation
    else { return nil }
    return "the primary behind it at \(at) answered a handshake as node \(answer.node)"
  }
}

/// `NODE/state/takeover.lock`: held by a running takeover for its whole run (and by a
/// failover restore, which must not run beside one), with its pid in the file. A killed
/// takeover leaves nothing stale; the next run finishes its journal.
enum TakeoverLock {
  static func path(_ layout: NodeLayout) -> String { layout.state + "/takeover.lock" }

  /// Takes the lock, waiting up to `timeout` seconds for a takeover that holds it (and
  /// telling `waiting` so, once).
  static func acquire(_ layout: NodeLayout, timeout: Double = 600, waiting: (String) -> Void) throws
    -> HeldFileLock
  {
    let path = path(layout)
    do {
      return try HeldFileLock.acquire(path: path, timeout: timeout) { holder in
        waiting(
          "another takeover of \(layout.root) is running\(holder.map { " (pid \($0))" } ?? ""); waiting for it to finish, then reporting its answer"
        )
      }
    } catch HeldFileLock.Failure.cannotOpen(let reason) {
      throw TakeoverError.lockFile(path: path, reason: "cannot open it: " + reason)
    } catch HeldFileLock.Failure.cannotLock(let reason) {
      throw TakeoverError.lockFile(path: path, reason: "cannot lock it: " + reason)
    } catch HeldFileLock.Failure.held(let holder) {
      throw TakeoverError.anotherTakeover(node: layout.root, pid: holder, seconds: timeout)
    }
  }
}
