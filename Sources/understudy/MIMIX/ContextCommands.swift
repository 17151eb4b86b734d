// `rtstart`, `rtstop`, `scconfig`: a context's daemon and its statemap, by context ID.

import ArgumentParser
import Foundation
import Harness
import MIMIX
import Node

/// `-C <ID>` resolved to its context on this server (a failover context names the same node).
struct ContextOption: ParsableArguments {
  @Option(name: .customShort("C"), help: "Context ID.")
  var context: String
  @OptionGroup var home: HomeOption

  func load() throws -> (ServerHome, ContextConfig, primary: ContextID) {
    let home = home.resolved
    let config = try home.load(try ContextID(parsing: context))
    return (home, config, config.reverseOf ?? config.id)
  }
}

struct RTStart: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "rtstart", abstract: "Start a context's daemon in the background; returns once it serves.")

  @OptionGroup var context: ContextOption
  @Option(help: "Seconds to wait until it serves.")
  var timeout: Double = 60
  @OptionGroup var output: JSONFlag

  func run() throws {
    try reporting(json: output.json) {
      let (home, config, primary) = try context.load()
      let layout = NodeLayout(root: config.node)
      if WriteBlock.reason(layout) == ContextDaemon.drainReason { try WriteBlock.clear(layout) }  // a drain cut short
      let pid = try ContextDaemon.start(layout, executable: Executable.current.path, timeout: timeout)
      var state = try home.state(primary)
      if state.fullStop {
        state.fullStop = false
        try home.saveState(state, of: primary)
      }
      let role = try layout.loadConfig().role
      if output.json {
        return Output.json(
          .object([
            ("context", .int(Int64(config.id.rawValue))), ("node", .string(config.node)),
            ("role", .string(role.rawValue)),
            ("started", .bool(pid != nil)), ("pid", pid.map { .int(Int64($0)) } ?? .null),
            ("log", .string(ContextDaemon.logPath(layout))),
          ]))
      }
      Output.line(
        pid.map {
          "context \(config.id): the \(role) daemon of \(config.node) serves (pid \($0); log \(ContextDaemon.logPath(layout)))"
        }
          ?? "context \(config.id): the daemon of \(config.node) was already running")
    }
  }
}

struct RTStop: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "rtstop",
    abstract: "Stop a context's daemon cleanly; -F stops everything of it (before scconfig -M), -S drains first.")

  @OptionGroup var context: ContextOption
  @Flag(name: .customShort("F"), help: "Full stop of the context (what `scconfig -M` needs).")
  var full = false
  @Flag(name: .customShort("S"), help: "Drain first: the backups apply all production committed (production only).")
  var drain = false
  @Option(help: "Seconds to wait for the drain and the stop.")
  var timeout: Double = 60
  @OptionGroup var output: JSONFlag

  func run() throws {
    try reporting(json: output.json) {
      let (home, config, primary) = try context.load()
      let layout = NodeLayout(root: config.node)
      var drainedTo: JSON = .null
      let pid: Int32?
      if drain {
        let (end, stopped) = try ContextDaemon.drainAndStop(layout, context: config.id, timeout: timeout)
        drainedTo = end.json
        pid = stopped
      } else {
        pid = try DaemonLock.stopIfRunning(layout, timeout: timeout)
      }
      if full {
        var state = try home.state(primary)
        state.fullStop = true
        try home.saveState(state, of: primary)
      }
      if output.json {
        return Output.json(
          .object([
            ("context", .int(Int64(config.id.rawValue))), ("node", .string(config.node)),
            ("stopped", .bool(pid != nil)), ("pid", pid.map { .int(Int64($0)) } ?? .null), ("full", .bool(full)),
            ("drainedTo", drainedTo),
          ]))
      }
      if case .object = drainedTo {
        Output.line("context \(config.id): every attached backup applied the MAT up to its end before the stop")
      }
      Output.line(
        (pid.map { "context \(config.id): the daemon of \(config.node) stopped (pid \($0))" }
          ?? "context \(config.id): no daemon was running") + (full ? "; full stop recorded" : ""))
    }
  }
}

struct SCConfig: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "scconfig",
    abstract: "Mark a context's statemap dirty (-M: the next resync is a full copy) or show it (-P).")

  @OptionGroup var context: ContextOption
  @Flag(name: .customShort("M"), help: "Mark the statemap dirty (on the acting production, after `rtstop -F`).")
  var mark = false
  @Flag(name: .customShort("P"), help: "Print whether the statemap is clean or dirty, and why.")
  var print = false
  @OptionGroup var output: JSONFlag

  func run() throws {
    try reporting(json: output.json) {
      guard mark != print else { throw ValidationError("give one of -M (mark dirty) or -P (print)") }
      let (home, config, _) = try context.load()
      let layout = NodeLayout(root: config.node)
      var statemap = try Statemap.read(layout)
      if mark { statemap = try StatemapMark.markDirty(home, config) }
      if output.json {
        return Output.json(
          .object([
            ("context", .int(Int64(config.id.rawValue))), ("dirty", .bool(statemap.dirty)),
            ("why", statemap.why.map(JSON.string) ?? .null),
          ]))
      }
      Output.line(
        statemap.dirty
          ? "context \(config.id): statemap DIRTY (\(statemap.why ?? "marked")); the next resync is a full copy"
          : "context \(config.id): statemap clean")
    }
  }
}
