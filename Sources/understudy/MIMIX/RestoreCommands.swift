// `scrt_ra`: a context's replica snapshots, virtual and failover restores, restore points;
// `rtmark`: an event marker in production's MAT. Thin: parse, call the procedure, print.

import ArgumentParser
import AuditTrail
import Foundation
import MIMIX
import Node
import Primary
import Procedures

/// The node a `scrt_ra` or `rtmark` works on: `-C <ID>` on this server's home, or `--node DIR`.
struct ContextOrNode: ParsableArguments {
  @Option(name: .customShort("C"), help: "Context ID.")
  var context: String?
  @Option(help: "A node directory instead of a context.")
  var node: String?
  @OptionGroup var home: HomeOption

  func validate() throws {
    guard (context == nil) != (node == nil) else { throw ValidationError("give one of -C <ID> or --node DIR") }
  }

  var resolved: String {
    get throws {
      if let node { return node }
      return try home.resolved.load(try ContextID(parsing: context!)).node
    }
  }

  var name: String { context.map { "context \($0)" } ?? "node \(node!)" }
}

struct ScrtRA: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "scrt_ra",
    abstract: "Replica snapshots and restores on a recovery server: -X, -D|-S|-t, -F, -W, -l.",
    discussion: """
      scrt_ra -C X -X                    snapshot of the replica as it is, while it keeps applying
      scrt_ra -C X -D TIME | -S M | -t P  virtual restore: a snapshot as the replica was at that point
      scrt_ra -C X -F -D|-S|-t … -q      failover restore: the replica itself rolled back to it
      scrt_ra -C X -W                    release the snapshot (close it in the application first)
      scrt_ra -C X -l                    restore points: oldest and newest position and time, markers

      TIME is "YYYY-MM-DD HH:MM:SS[.ffffff]" or "MM/DD/YY HH:MM:SS", in local time (TZ) unless
      it ends in Z, UTC or +HH:MM; it keeps every transaction committed at or before it and
      none after. -S takes a marker name (from `rtmark`) or unix seconds. -t takes SNO:RBA
      (the 888 position of a takeover keeps exactly what the takeover held). The restore
      window is the image trail's retention (--retention on the backup), back to the last
      failover or failback; a target outside it is refused with the valid range.
      """)

  @OptionGroup var target: ContextOrNode
  @Flag(name: .customShort("X"), help: "Take a snapshot of the replica as it is.")
  var snapshot = false
  @Option(name: .customShort("D"), help: "Virtual restore to a date and time.")
  var date: String?
  @Option(name: .customShort("S"), help: "Virtual restore to an event marker, or to unix seconds.")
  var marker: String?
  @Option(name: .customShort("t"), help: "Virtual restore to a MAT position SNO:RBA.")
  var position: String?
  @Flag(name: .customShort("F"), help: "Failover restore: roll the replica itself back (needs -q).")
  var failover = false
  @Flag(name: .customShort("q"), help: "Confirm a failover restore without asking.")
  var quiet = false
  @Flag(name: .customShort("W"), help: "Release the snapshot.")
  var release = false
  @Flag(name: .customShort("l"), help: "List the restore points.")
  var list = false
  @OptionGroup var output: JSONFlag

  func validate() throws {
    let targets = [date, marker, position].compactMap { $0 }.count
    let modes = [snapshot, release, list, failover, targets > 0 && !failover].filter { $0 }.count
    guard targets <= 1 else { throw ValidationError("give at most one of -D, -S and -t") }
    guard modes == 1 else { throw ValidationError("give one of -X, -D|-S|-t, -F with -D|-S|-t, -W or -l") }
    if failover && targets == 0 { throw ValidationError("-F needs the point to restore to: -D, -S or -t") }
  }

  func restoreTarget() throws -> RestoreTarget? {
    if let date { return .time(try RestoreTime.parse(date)) }
    if let marker {
      if let micros = RestoreTime.parse(unixSeconds: marker) { return .time(micros) }
      if let problem = MarkerPayload.problem(with: marker) {
        throw RestoreError.badMarker(name: marker, problem: problem)
      }
      return .marker(marker)
    }
    if let position { return .position(try MATPosition(parsing: position)) }
    return nil
  }

  func run() throws {
    try reporting(json: output.json) {
      let node = try target.resolved
      let layout = NodeLayout(root: node)
      let config = try layout.loadConfig()
      let events = EventLog(layout: layout, node: config.nodeId.description)
      let show = { (text: String) in Output.progress(text + "\n", json: output.json) }
      if list {
        let window = try RestoreWindow.find(layout, database: config.database, withMarkers: true)
        if output.json { return Output.json(window.json) }
        Output.line("\(target.name): restore points of the replica (generation \(window.generation))")
        Output.line("  oldest   \(window.oldest)  \(window.oldestMicros.map(RestoreTime.text) ?? "-")")
        Output.line("  newest   \(window.newest)  \(window.newestMicros.map(RestoreTime.text) ?? "-")")
        for m in window.markers { Output.line("  marker   \(m.position)  \(RestoreTime.text(m.micros))  \(m.name)") }
        Output.line(
          "  the window is the image trail's retention (--retention \(window.retentionSeconds) s), back to the last failover or failback"
        )
        return
      }
      if release {
        let info = try ReplicaSnapshot.release(node: node)
        let path = info?.path ?? ReplicaSnapshot.databasePath(layout)
        events.log(.snapshotReleased, "snapshot \(path) released", [("path", .string(path))])
        if output.json { return Output.json(.object([("released", .string(path))])) }
        return Output.line("\(target.name): snapshot \(path) released")
      }
      let restore = try restoreTarget()
      if failover {
        guard quiet else { throw RestoreError.needsConfirmation(target: restore!) }
        let result = try FailoverRestore.run(node: node, to: restore!, progress: show)
        if output.json { return Output.json(result.json) }
        Output.line("\(target.name): failover restore to \(result.target) complete")
        Output.line("  position   \(result.restoredTo) (transaction \(result.lastTxid))")
        Output.line("  undone     \(result.undone) transactions, listed in \(result.report)")
        Output.line("  checksum   \(result.checksum)")
        Output.line("  set aside  \(result.setAside)")
        Output.line("  next: rtdr -C <ID> failover (888 at \(result.restoredTo)), then rtdr -C <ID> resync")
        return
      }
      let info = try ReplicaSnapshot.take(node: node, target: restore, progress: show)
      events.log(
        .snapshotTaken,
        "snapshot \(info.path) at \(info.position) (\(info.target)): \(info.undone) transactions undone",
        [
          ("path", .string(info.path)), ("position", info.position.json), ("target", .string(info.target)),
          ("undone", .int(Int64(info.undone))), ("checksum", .string(info.checksum)),
        ])
      if output.json { return Output.json(info.json) }
      Output.line("\(target.name): snapshot \(info.path)")
      Output.line("  position   \(info.position) (transaction \(info.lastTxid))")
      Output.line("  time       \(info.micros.map(RestoreTime.text) ?? "-")")
      Output.line("  checksum   \(info.checksum)")
      if restore != nil {
        Output.line("  undone     \(info.undone) transactions on the copy; the replica is untouched")
      }
      Output.line("  release it with scrt_ra -W once the application has closed it")
    }
  }
}

struct RTMark: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "rtmark",
    abstract: "Write a named event marker into production's MAT (a point `scrt_ra -S NAME` restores to).")

  @OptionGroup var target: ContextOrNode
  @Argument(help: "The marker's name.")
  var name: String
  @OptionGroup var output: JSONFlag

  func run() throws {
    try reporting(json: output.json) {
      guard let marker = MarkerPayload(name: name) else {
        throw RestoreError.badMarker(name: name, problem: MarkerPayload.problem(with: name) ?? "invalid")
      }
      let node = try target.resolved
      let db = try AuditedDatabase.open(node: node)
      defer { db.close() }
      let info = try db.writeMarker(marker)
      let layout = NodeLayout(root: node)
      EventLog(layout: layout, node: try layout.loadConfig().nodeId.description).log(
        .markerWritten, "event marker '\(name)' at \(info.position)",
        [("name", .string(name)), ("position", info.position.json)])
      if output.json {
        return Output.json(
          .object([
            ("name", .string(name)), ("position", info.position.json), ("end", info.end.json),
            ("txid", .int(Int64(info.txid.rawValue))),
          ]))
      }
      Output.line("\(target.name): marker '\(name)' at \(info.position) (after transaction \(info.txid))")
    }
  }
}
