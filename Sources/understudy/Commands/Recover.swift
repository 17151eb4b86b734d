// `recover` and `follow`: the old primary's way back after a takeover.

import ArgumentParser
import AuditTrail
import Node
import Procedures

struct RecoverCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "recover",
    abstract: "File recovery to a MAT position: roll the old primary back to exactly what the new primary holds.",
    discussion: """
      Run on the old primary with its daemon stopped, with the position of the new
      primary's 888 event. Replays the node's own MAT, checks the position, writes the
      lost-transactions report (JSON lines, one per undone transaction), undoes newest
      first in one SQLite transaction, fences the undone records out of the MAT, logs 400
      and prints the checksum, which equals the 888 event's. Safe to run again.
      """)

  @OptionGroup var node: NodeOption
  @OptionGroup var output: JSONFlag
  @Option(name: .customLong("to-mat"), help: "The file-recovery position SNO:RBA (from event 888).")
  var toMat: String
  @Option(help: "Where to write the lost-transactions report (default NODE/state/lost-transactions-SNO-RBA.jsonl).")
  var report: String?

  func run() throws {
    try reporting(json: output.json) {
      let position = try MATPosition(parsing: toMat)
      let result = try FileRecovery.run(node: node.node, to: position, report: report) {
        Output.progress($0 + "\n", json: output.json)
      }
      if output.json { return Output.json(result.json) }
      Output.line("file recovery to MAT position \(result.recoveredTo) complete (400)")
      Output.line("  undone     \(result.undone) transactions, listed in \(result.report)")
      Output.line("  checksum   \(result.checksum)")
      Output.line("  next: understudy follow --node \(node.node) --primary HOST:PORT --secret-file F")
    }
  }
}

struct FollowCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "follow",
    abstract: "Make a recovered node the backup of the new primary (then `start` runs it as one).",
    discussion: """
      The handshake proves this node's database is exactly the base of the new primary's
      generation (position, transaction and checksum); if it is not, the primary refuses
      and says so. --full-copy sets the database aside instead and the next start copies
      the primary's.
      """)

  @OptionGroup var node: NodeOption
  @OptionGroup var output: JSONFlag
  @Option(help: "The new primary, HOST:PORT.")
  var primary: String
  @Option(name: .customLong("secret-file"), help: "The link secret (the new primary's secret.key).")
  var secretFile: String
  @Flag(name: .customLong("full-copy"), help: "Set this node's database aside; the next start copies the primary's.")
  var fullCopy = false

  func run() throws {
    try reporting(json: output.json) {
      let result = try Follow.run(node: node.node, primary: primary, secretFile: secretFile, fullCopy: fullCopy)
      if output.json { return Output.json(result.json) }
      if let from = result.from {
        Output.line(
          "\(node.node) now follows \(result.primary) (generation \(result.generation)) from \(from); run `understudy start --node \(node.node)`"
        )
      } else {
        Output.line(
          "\(node.node) now follows \(result.primary) (generation \(result.generation)); its database was set aside (\(result.setAside ?? "")) and `understudy start` copies the primary's"
        )
      }
    }
  }
}
