// Fencing an old primary (invariant 3): a node never serves or writes once a newer
// generation exists. The primary remembers where each backup it served would serve as
// a primary (`state/backups.json`); while no backup is attached it asks them, with the
// authenticated handshake, at which generation they stand. A newer one means this node
// was taken over: it logs 829, blocks writes, and stops extracting. File recovery asks
// the same question before it undoes anything. The list itself is kept in `Apply`
// (KnownBackups.swift): a relaying backup remembers its next hops the same way.

import Apply
import AuditTrail
import Foundation
import Link
import Node

extension Fencing {
  /// A newer generation that answered a probe but whose claim this node refused.
  public struct Refusal: Sendable {
    public var peer: LinkPeer
    public var address: String
    public var reason: String
  }

  /// The first known backup that now answers as the primary of the next generation and
  /// proves it began from this node's MAT (see `check`). Others that claim a newer
  /// generation are passed to `refused`; a backup that does not answer is skipped.
  public static func findNewerGeneration(
    _ layout: NodeLayout, _ config: NodeConfig, refused: (Refusal) -> Void = { _ in }
  ) throws -> (LinkPeer, String)? {
    let key = try Secret.load(path: layout.secretKey)
    let me = LinkIdentity(config, key: key)
    for (index, backup) in try knownBackups(layout).enumerated() {
      guard let address = try? HostPort(parsing: backup.listen) else {
        throw FencingError.unreadableBackups(
          node: layout.root,
          StateFileError(path: knownPath(layout), reason: "entry \(index): '\(backup.listen)' is not HOST:PORT"))
      }
      // Not answering is no news: the backup may be down or not serve yet.
      guard
        let (peer, base, why) = try? Handshake.probeBase(
          address, as: me, reason: "generation check by the primary of generation \(config.generation)", timeout: 1,
          ask: { $0.generation > config.generation }),
        peer.generation > config.generation
      else { continue }
      if let problem = try check(base, why: why, of: peer, layout, config) {
        // A backup of the newer generation: the one that took over may be a node this one
        // never knew (a cascade's next hop). Its primary is asked the same question.
        if let (primary, at) = try newerPrimary(behind: address, as: me, layout, config) { return (primary, at) }
        refused(Refusal(peer: peer, address: backup.listen, reason: problem))
        continue
      }
      return (peer, backup.listen)
    }
    return nil
  }

  /// The primary a backup of a newer generation follows, when it proves it began from this
  /// node's MAT.
  static func newerPrimary(behind backup: HostPort, as me: LinkIdentity, _ layout: NodeLayout, _ config: NodeConfig)
    throws -> (LinkPeer, String)?
  {
    guard let answer = try? Handshake.queryContext(backup, as: me, timeout: 1).1, answer.role == .backup,
      answer.generation > config.generation, let primary = answer.primary,
      let address = try? HostPort(parsing: primary),
      let (peer, base, why) = try? Handshake.probeBase(
        address, as: me, reason: "generation check by the primary of generation \(config.generation)", timeout: 1,
        ask: { $0.generation > config.generation }),
      peer.generation > config.generation, try check(base, why: why, of: peer, layout, config) == nil
    else { return nil }
    return (peer, primary)
  }

  /// Why `peer`'s claim to have superseded this node does not hold, or nil if it does:
  /// its generation is the next one, and its base is a record boundary of this node's
  /// current MAT segment whose last transaction is the base's. The base's checksum is not
  /// compared: this node cannot cheaply compute its database's checksum at an earlier
  /// position, so the position and transaction id stand in for it.
  static func check(
    _ base: Message.GenerationBase?, why: String?, of peer: LinkPeer, _ layout: NodeLayout, _ config: NodeConfig
  ) throws -> String? {
    guard peer.generation == config.generation.next else {
      return "generation \(peer.generation) is not the next after this node's \(config.generation)"
    }
    guard let base else { return "it shows no base for its generation (\(why ?? "no answer"))" }
    guard base.generation == peer.generation else {
      return "its base is of generation \(base.generation), not of its generation \(peer.generation)"
    }
    guard base.priorNode == config.nodeId else {
      return "its generation began from node \(base.priorNode)'s MAT, not this node's (\(config.nodeId))"
    }
    let p = base.priorEnd
    let segmentStart = config.matStart ?? MATPosition(sno: 1, rba: TrailFormat.firstRBA)
    guard p >= segmentStart else {
      return
        "its base \(p) lies before this node's MAT segment of generation \(config.generation), which starts at \(segmentStart)"
    }
    let status = try NodeStatus.read(node: layout.root)
    guard p <= status.trailEnd else { return "its base \(p) lies beyond this node's MAT end \(status.trailEnd)" }
    let mat = layout.mat
    // A base in a file this node has since removed (the MAT purge dropped that backup
    // past maxRetainedBytes, 9042): the boundary can no longer be read, but the order can
    // be checked. Refusing here would leave two primaries taking writes.
    if !mat.fileExists(sno: p.sno), let oldest = status.oldestKept, p < oldest {
      let first = try TrailReader(directory: mat, from: oldest).next()
      guard case .record(let r) = first, base.priorTxid < r.record.txid else {
        return
          "its base \(p) lies in a removed MAT file, but its transaction \(base.priorTxid) is not before this node's oldest kept one"
      }
      return nil
    }
    guard mat.fileExists(sno: p.sno),
      case .success(let header) = FileHeader.decode(try mat.headerAndSize(sno: p.sno).header),
      header.nodeID == config.nodeId, header.generation == config.generation
    else { return "its base \(p) is not in a MAT file of this node's generation \(config.generation)" }
    // From a record boundary, whole records lead exactly to the MAT's end.
    var txidAtBase = status.lastTxid
    if p != status.trailEnd {
      let reader = try TrailReader(directory: mat, from: p)
      var firstCommit: TransactionID?
      var reached: MATPosition?
      loop: while true {
        // A record that does not decode from there: not a boundary (or damage, named).
        let step: TrailReader.Step
        do {
          step = try reader.next()
        } catch {
          return "its base \(p) is not a record boundary of this node's MAT (reading from it: \(error))"
        }
        switch step {
        case .record(let r):
          if firstCommit == nil, r.record.type == .commit { firstCommit = r.record.txid }
          if r.end == status.trailEnd {
            reached = r.end
            break loop
          }
        case .end(let e), .tornTail(let e, _):
          reached = e
          break loop
        }
      }
      guard reached == status.trailEnd else { return "its base \(p) is not a record boundary of this node's MAT" }
      if let firstCommit { txidAtBase = TransactionID(firstCommit.rawValue - 1) }
    }
    guard txidAtBase == base.priorTxid else {
      return "at its base \(p) this node's MAT holds transaction \(txidAtBase), not \(base.priorTxid)"
    }
    return nil
  }

  /// Logs a refused claim (9070).
  public static func log(_ refusal: Refusal, _ events: EventLog) {
    events.log(
      .supersedeRefused,
      "node \(refusal.peer.nodeID) at \(refusal.address) claims generation \(refusal.peer.generation), but this primary (still serving) does not accept being superseded: \(refusal.reason)",
      [("generation", .int(Int64(refusal.peer.generation.rawValue))), ("listen", .string(refusal.address))])
  }

  /// Records that generation `generation` (node `by`, at `address`) replaced this
  /// primary: blocks writes, logs 829. Returns the updated config.
  @discardableResult
  public static func supersede(
    _ layout: NodeLayout, generation: Generation, by: NodeID?, address: String?, events: EventLog
  ) throws -> NodeConfig {
    var config = try layout.loadConfig()
    let where_ = address.map { " at \($0)" } ?? ""
    let reason =
      "generation \(generation) took over from this primary (generation \(config.generation))\(where_). Run file recovery to the 888 position the new primary reported: `understudy recover --node \(layout.root) --to-mat SNO:RBA`, then `understudy follow`"
    try WriteBlock.set(layout, reason: reason)
    if config.superseded == nil {
      config.superseded = .init(generation: generation, by: by, address: address, learnedMicros: Clock.nowMicros())
      try layout.saveConfig(config)
      events.log(
        .superseded, "this primary was taken over: \(reason)",
        [("generation", .int(Int64(generation.rawValue))), ("listen", .string(address ?? ""))])
    }
    return config
  }
}
