// `rtdr`: MIMIX's disaster-recovery command, with its syntax and flags. Thin: parses,
// plans, asks, runs the plan (Sources/MIMIX/RTDR.swift), prints.

import ArgumentParser
import Foundation
import Harness
import MIMIX
import Node

/// `--home DIR`, shared by the MIMIX commands.
struct HomeOption: ParsableArguments {
  @Option(name: .long, help: "The server's home (default: $UNDERSTUDY_HOME, else /var/lib/understudy).")
  var home: String?

  var resolved: ServerHome { ServerHome.resolve(home) }
}

struct RTDRCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "rtdr",
    abstract: "MIMIX disaster recovery: setup, failover, resync, failback of a context (-m for the manual).",
    usage: RTDRManual.usage,
    helpNames: [.long])

  @Option(name: .customShort("C"), help: "Context ID (of the primary context).")
  var context: String?
  @Option(name: .customShort("F"), help: "Failover context ID (setup).")
  var failoverContext: String?
  @Option(name: .customShort("s"), help: "The recovery server to fail over to (setup; default: the first hop).")
  var site: String?
  @Flag(name: .customShort("f"), help: "Forced execution (use with caution); still asks unless -q.")
  var forced = false
  @Flag(name: .customShort("h"), help: "Print usage.")
  var usage = false
  @Flag(name: .customShort("m"), help: "Print the manual page.")
  var manual = false
  @Flag(name: .customShort("n"), help: "No execution: print the steps and change nothing.")
  var dryRun = false
  @Flag(name: .customShort("q"), help: "Quiet: do not ask for confirmation.")
  var quiet = false
  @Flag(name: .customShort("v"), help: "Verbose: each step and its result as it happens.")
  var verbose = false
  @Option(help: "Seconds any wait may take (the drain, catching up, the switchover).")
  var timeout: Double = 300
  @OptionGroup var home: HomeOption
  @OptionGroup var output: JSONFlag
  @Argument(help: "failover | resync | failback | setup")
  var operation: String?

  func run() throws {
    if manual { return Output.line(RTDRManual.page) }
    if usage { return Output.line(RTDRManual.usage) }
    try reporting(json: output.json) {
      guard let operation, let op = RTDROperation(rawValue: operation) else {
        throw usageError((self.operation.map { "'\($0)' is not an rtdr operation" } ?? "no operation given"))
      }
      guard let context else { throw usageError("-C <ID> is required") }
      if op != .setup, failoverContext != nil || site != nil {
        throw usageError("-F and -s belong to setup: `rtdr -C \(context) -F <ID> [-s <hostname>] setup`")
      }
      if op == .setup, failoverContext == nil {
        throw usageError("setup needs the failover context: `rtdr -C \(context) -F <ID> [-s <hostname>] setup`")
      }
      let options = RTDROptions(
        home: home.resolved, context: try ContextID(parsing: context),
        failoverContext: try failoverContext.map(ContextID.init(parsing:)), site: site, forced: forced,
        timeout: timeout, executable: Executable.current.path)
      let plan = try RTDR.plan(op, options)
      if dryRun { return printDryRun(plan) }
      if !quiet { try confirm(plan) }
      let report = try RTDR.run(plan, options) { command, result in
        guard verbose else { return }
        let text = result.map { "   \($0.text)" } ?? "-> \(command)"
        if output.json { FileHandle.standardError.write(Data((text + "\n").utf8)) } else { Output.line(text) }
      }
      if output.json { return Output.json(report.json) }
      if !verbose { for step in report.steps { Output.line("   \(step.result.text)") } }
      Output.line(report.outcome.text)
    }
  }

  /// The problem and MIMIX's usage on stderr; exit 64 (EX_USAGE), nothing run.
  private func usageError(_ problem: String) -> ExitCode {
    Output.error(problem + "\nusage:\n" + RTDRManual.usage)
    if output.json { Output.json(.object([("error", .string(problem))])) }
    return ExitCode(64)
  }

  private func printDryRun(_ plan: RTDRPlan) {
    if output.json {
      return Output.json(
        .object([
          ("operation", .string(plan.operation.rawValue)), ("context", .int(Int64(plan.context.rawValue))),
          ("server", .string(plan.server)), ("dryRun", .bool(true)), ("summary", .array(plan.summary.map(JSON.string))),
          (
            "steps",
            .array(plan.steps.map { .object([("command", .string($0.command)), ("what", .string($0.what))]) })
          ),
        ]))
    }
    for line in plan.summary { Output.line(line) }
    Output.line("steps (-n: nothing is run):")
    for (i, step) in plan.steps.enumerated() { Output.line("  \(i + 1). \(step.command)\n       \(step.what)") }
  }

  /// States what will happen and asks; anything but `yes` aborts with nothing changed.
  private func confirm(_ plan: RTDRPlan) throws {
    var text = plan.summary.joined(separator: "\n") + "\nSteps:\n"
    for (i, step) in plan.steps.enumerated() { text += "  \(i + 1). \(step.command)\n" }
    text += "Type yes to \(plan.operation.rawValue) context \(plan.context) on \(plan.server): "
    FileHandle.standardError.write(Data(text.utf8))
    let answer = readLine(strippingNewline: true)?.trimmingCharacters(in: .whitespaces)
    guard answer == "yes" else {
      throw MIMIXError.aborted(operation: "rtdr -C \(plan.context) \(plan.operation.rawValue)")
    }
  }
}
