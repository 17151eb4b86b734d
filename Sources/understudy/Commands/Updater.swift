// `updater stop --at TIME | --at-marker NAME` and `updater start`: RDF's `STOP UPDATE,
// TIMESTAMP` for the backup's updater. Thin: parse, call UpdaterStopControl, print.

import ArgumentParser
import AuditTrail
import Backup
import Foundation
import Node
import Procedures

struct UpdaterCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "updater",
    abstract: "Stop the backup's updater at a point in time or at a marker, and start it again.",
    subcommands: [UpdaterStopCommand.self, UpdaterStartCommand.self])
}

struct UpdaterStopCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "stop",
    abstract: "Make the backup's updater stop exactly at a time or before a marker; the receiver goes on.",
    discussion: """
      --at TIME applies every transaction committed at or before TIME (the primary's clock)
      and no record stamped after it. TIME is "YYYY-MM-DD HH:MM:SS[.ffffff]" or
      "MM/DD/YY HH:MM:SS", in local time (TZ) unless it ends in Z, UTC or +HH:MM, or unix
      seconds. --at-marker NAME applies everything before the next marker NAME (`rtmark`)
      and nothing from it on. The stop is kept in NODE/state/updater-stop.json: it holds
      across restarts until `understudy updater start`. With the daemon running the command
      waits (up to 10 s) until its updater honours the stop, then checks that the replica
      has not applied past the point; a point already passed is refused (`scrt_ra -F` rolls
      the replica back instead). Takeover applies everything received, stop or not.
      """)

  @OptionGroup var node: NodeOption
  @Option(help: "Stop after every transaction committed at or before this time.")
  var at: String?
  @Option(name: .customLong("at-marker"), help: "Stop right before the next marker of this name.")
  var atMarker: String?
  @OptionGroup var output: JSONFlag

  func validate() throws {
    guard (at == nil) != (atMarker == nil) else { throw ValidationError("give one of --at TIME or --at-marker NAME") }
    if let atMarker, let problem = MarkerPayload.problem(with: atMarker) {
      throw ValidationError("--at-marker \(atMarker): \(problem)")
    }
  }

  func point() throws -> UpdaterStop.Point {
    if let atMarker { return .marker(atMarker) }
    if let micros = RestoreTime.parse(unixSeconds: at!) { return .time(micros) }
    return .time(try RestoreTime.parse(at!))
  }

  func run() throws {
    try reporting(json: output.json) {
      let outcome = try UpdaterStopControl.stop(node: node.node, at: try point())
      if output.json {
        return Output.json(
          .object([
            ("action", .string("stop")), ("node", .string(node.node)), ("id", .string(outcome.stop.id)),
            ("at", outcome.stop.point.json), ("applied", outcome.applied.state.end.json),
            ("lastTxid", .int(Int64(outcome.applied.state.lastTxid.rawValue))),
            ("appliedTime", outcome.applied.micros.map { .string(RestoreTime.text($0)) } ?? .null),
            ("daemon", .bool(outcome.daemonRunning)), ("acknowledged", .bool(outcome.acknowledged)),
            ("reached", .bool(outcome.reached)),
          ]))
      }
      let at = Self.text(outcome.stop.point)
      let applied =
        "applied up to \(outcome.applied.state.end) (transaction \(outcome.applied.state.lastTxid)"
        + (outcome.applied.micros.map { ", \(RestoreTime.text($0))" } ?? "") + ")"
      if !outcome.daemonRunning {
        Output.line(
          "\(node.node): updater stop set at \(at); no daemon runs, so it takes effect when `understudy start` starts it. The replica has \(applied)"
        )
      } else if outcome.reached {
        Output.line("\(node.node): the updater stands at the stop point \(at): \(applied); the receiver goes on")
      } else {
        Output.line(
          "\(node.node): the updater honours the stop at \(at) and has \(applied) so far; it applies up to the point and holds there while the receiver goes on"
        )
      }
      Output.line("  resume with: understudy updater start --node \(node.node)")
    }
  }

  static func text(_ point: UpdaterStop.Point) -> String {
    switch point {
    case .time(let micros): "time \(RestoreTime.text(micros))"
    case .marker(let name): "marker '\(name)'"
    }
  }
}

struct UpdaterStartCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "start",
    abstract: "Remove the updater's stop point: it applies on from where it stands.")

  @OptionGroup var node: NodeOption
  @OptionGroup var output: JSONFlag

  func run() throws {
    try reporting(json: output.json) {
      let outcome = try UpdaterStopControl.start(node: node.node)
      if output.json {
        return Output.json(
          .object([
            ("action", .string("start")), ("node", .string(node.node)), ("removed", .bool(outcome.removed)),
            ("at", outcome.stop?.point.json ?? .null), ("daemon", .bool(outcome.daemonRunning)),
            ("acknowledged", .bool(outcome.acknowledged)),
          ]))
      }
      guard outcome.removed else { return Output.line("\(node.node): the updater has no stop point; nothing to do") }
      let what = outcome.stop.map { " at \(UpdaterStopCommand.text($0.point))" } ?? ""
      Output.line(
        "\(node.node): updater stop\(what) removed; "
          + (!outcome.daemonRunning
            ? "no daemon runs: it applies on when `understudy start` starts it"
            : outcome.acknowledged
              ? "the updater applies on" : "the updater applies on at its next look (it did not confirm within 10 s)"))
    }
  }
}
