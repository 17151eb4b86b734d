// Planned switchover: the primary stops accepting writes, writes a switchover record,
// and waits until its backup has applied it. In time: the switchover is committed, the
// daemon's extractor tells the backup to become the primary of generation g+1, and this
// node then follows it (its database is exactly the new generation's base, so no file
// recovery and no copy). Not in time: a cancellation record follows, and writes resume.
//
// Every decision is in `state/switchover.json` before it is acted on; the daemons
// finish an interrupted switchover when they start.

import Apply
import AuditTrail
import Backup
import Foundation
import Node
import Primary

public struct SwitchoverResult: Sendable {
  public var generation: Generation
  public var newPrimary: NodeID
  public var newPrimaryAddress: String
  public var record: MATPosition
  public var end: MATPosition
  public var checksum: String

  public var json: JSON {
    .object([
      ("generation", .int(Int64(generation.rawValue))), ("newPrimary", .string(newPrimary.description)),
      ("newPrimaryAddress", .string(newPrimaryAddress)), ("record", record.json), ("end", end.json),
      ("checksum", .string(checksum)),
    ])
  }
}

public enum SwitchoverError: Error, CustomStringConvertible {
  case daemonNotRunning(node: String)
  case noBackup(node: String)
  case noListenAddress(node: String, backup: NodeID)
  case abandoned(node: String, backup: NodeID, applied: MATPosition?, end: MATPosition, seconds: Double)
  case unfinished(node: String, phase: String)

  public var description: String {
    switch self {
    case .daemonNotRunning(let node):
      "switchover needs the daemon of \(node) running: it ships the switchover record and hands over. Start it with `understudy start --node \(node)`"
    case .noBackup(let node): "no backup is connected to \(node); a switchover needs one that is streaming"
    case .noListenAddress(let node, let backup):
      "backup \(backup) of \(node) has no listen address, so it cannot serve as a primary; give it one at `init backup --listen`"
    case .abandoned(let node, let backup, let applied, let end, let seconds):
      "switchover abandoned: backup \(backup) had applied \(applied.map(\.description) ?? "nothing") within \(Int(seconds)) s, not the switchover record ending at \(end). A cancellation record follows it and \(node) accepts writes again"
    case .unfinished(let node, let phase):
      "the switchover of \(node) is committed (\(phase)) but not finished yet; the daemons finish it when the backup is reachable. Watch `understudy events --node \(node) --follow`"
    }
  }
}

public enum Switchover {
  /// `to`: the backup to hand over to, when several are attached (default: the first).
  public static func run(
    node: String, timeout: Double, to target: NodeID? = nil, progress: (String) -> Void = { _ in }
  ) throws -> SwitchoverResult {
    let layout = NodeLayout(root: node)
    let config = try layout.loadConfig()
    guard config.role == .primary else {
      throw NodeError.wrongRole(node: node, role: config.role, needed: .primary, command: "switchover")
    }
    guard DaemonLock.isHeld(layout) else { throw SwitchoverError.daemonNotRunning(node: node) }
    let events = EventLog(layout: layout, node: config.nodeId.description)

    var plan: SwitchoverJournal
    if let open = try SwitchoverJournal.read(layout), open.isOpen, open.generation == config.generation.next {
      plan = open  // an interrupted run: go on from where it stood
    } else {
      // The daemon publishes its attached backups every 0.2 s: give a fresh link a moment.
      func chosen() throws -> AttachedBackup? {
        try PrimaryServer.readAttached(layout).first { target == nil || $0.nodeID == target }
      }
      var attached = try chosen()
      let patience = Clock.monotonicSeconds() + min(timeout, 5)
      while attached == nil && Clock.monotonicSeconds() < patience {
        usleep(50_000)
        attached = try chosen()
      }
      guard let backup = attached else { throw SwitchoverError.noBackup(node: node) }
      guard let listen = try Fencing.knownBackups(layout).first(where: { $0.node == backup.nodeID })?.listen else {
        throw SwitchoverError.noListenAddress(node: node, backup: backup.nodeID)
      }
      plan = SwitchoverJournal(generation: config.generation.next, target: backup.nodeID, targetListen: listen)
      try plan.save(layout)
    }
    if plan.phase == .started {
      try WriteBlock.set(
        layout,
        reason:
          "switchover in progress to node \(plan.target) at \(plan.targetListen); writes resume here if it is abandoned, or go to the new primary"
      )
      let db = try AuditedDatabase.open(node: node)
      let info = try db.writeControlRecord(
        .switchover, payload: SwitchoverPayload(generation: plan.generation, newPrimary: plan.target).encoded())
      db.close()
      plan.record = info.position
      plan.end = info.end
      plan.txid = info.txid
      plan.phase = .waiting
      try plan.save(layout)
      events.log(
        .switchoverStarted,
        "switchover to node \(plan.target) at \(plan.targetListen) started: writes stopped, switchover record at \(info.position)",
        [("position", info.position.json), ("generation", .int(Int64(plan.generation.rawValue)))])
    }
    if plan.phase == .waiting {
      progress("waiting for the backup to apply the switchover record ending at \(plan.end!)")
      let deadline = Clock.monotonicSeconds() + timeout
      var applied: MATPosition?
      while true {
        applied = try PrimaryServer.readAttached(layout).first { $0.nodeID == plan.target }?.applied
        if let applied, applied >= plan.end! { break }
        if Clock.monotonicSeconds() > deadline {
          try abandon(layout, &plan, events: events)
          throw SwitchoverError.abandoned(
            node: node, backup: plan.target, applied: applied, end: plan.end!, seconds: timeout)
        }
        usleep(20_000)
      }
      plan.phase = .committed
      try plan.save(layout)
      events.log(
        .switchoverCommitted,
        "switchover committed: node \(plan.target) applied the switchover record ending at \(plan.end!)",
        [("position", plan.end!.json)])
    }
    // The daemon hands over and then follows the new primary; wait for it.
    progress("handing over to node \(plan.target)")
    let deadline = Clock.monotonicSeconds() + max(timeout, 60)
    while plan.phase != .complete {
      guard Clock.monotonicSeconds() < deadline else {
        throw SwitchoverError.unfinished(node: node, phase: plan.phase.rawValue)
      }
      usleep(50_000)
      plan = try SwitchoverJournal.read(layout) ?? plan
    }
    let after = try layout.loadConfig()
    return SwitchoverResult(
      generation: plan.generation, newPrimary: plan.target, newPrimaryAddress: plan.targetListen, record: plan.record!,
      end: plan.end!, checksum: after.base?.checksum ?? "")
  }

  static func abandon(_ layout: NodeLayout, _ plan: inout SwitchoverJournal, events: EventLog) throws {
    let db = try AuditedDatabase.open(node: layout.root)
    let cancel = try db.writeControlRecord(
      .switchoverCancelled, payload: SwitchoverPayload(generation: plan.generation, newPrimary: plan.target).encoded())
    db.close()
    plan.phase = .abandoned
    try plan.save(layout)
    try WriteBlock.clear(layout)
    events.log(
      .switchoverAbandoned,
      "switchover abandoned: the backup did not apply the switchover record in time; cancellation at \(cancel.position); writes resume",
      [("position", cancel.position.json)])
  }

  /// What a daemon does before it runs its role: finish a switchover a kill interrupted.
  /// On the new primary, a decided promotion; on the old one, following the new primary.
  public static func finishInterrupted(_ layout: NodeLayout, events: EventLog) throws {
    try PromotionJournal.finish(layout, events: events)
    let config = try layout.loadConfig()
    guard config.role == .primary, var plan = try SwitchoverJournal.read(layout),
      plan.generation == config.generation.next
    else { return }
    if plan.phase == .committed {
      // Did the backup take over before this node heard it say so?
      guard let (peer, _) = try Fencing.findNewerGeneration(layout, config), peer.nodeID == plan.target,
        peer.generation == plan.generation
      else { return }
      plan.phase = .promoted
      try plan.save(layout)
    }
    guard plan.phase == .promoted, let end = plan.end else { return }
    var updated = config
    updated.superseded = .init(
      generation: plan.generation, by: plan.target, address: plan.targetListen, learnedMicros: Clock.nowMicros(),
      recoveredTo: end, recoveredTxid: plan.txid)
    try layout.saveConfig(updated)
    let key = try Secret.load(path: layout.secretKey)
    // The new primary may still be starting to listen.
    var attempt = 0
    while true {
      do {
        _ = try Follow.follow(layout, primary: plan.targetListen, key: key, fullCopy: false)
        break
      } catch {
        attempt += 1
        if attempt >= 100 { throw error }
        usleep(100_000)
      }
    }
    plan.phase = .complete
    try plan.save(layout)
    events.log(
      .switchoverComplete,
      "switchover complete: this node is now the backup of node \(plan.target) at \(plan.targetListen), generation \(plan.generation)",
      [("generation", .int(Int64(plan.generation.rawValue))), ("listen", .string(plan.targetListen))])
  }
}
