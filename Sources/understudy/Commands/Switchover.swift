// `switchover`: the planned change of roles, run on the primary.

import ArgumentParser
import Node
import Procedures

struct SwitchoverCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "switchover",
    abstract: "Hand the primary role to the connected backup with nothing lost (run on the primary).",
    discussion: """
      Stops writes (writers get "switchover in progress"), writes a switchover record and
      waits until the backup has applied it; then the backup becomes the primary of
      generation g+1 and this node its backup, both daemons going on in their new roles.
      Both databases are then equal and no file recovery is needed. If the backup does not
      apply the record within --timeout seconds, the switchover is abandoned: a
      cancellation record follows and writes resume (exit 1).
      """)

  @OptionGroup var node: NodeOption
  @OptionGroup var output: JSONFlag
  @Option(help: "Seconds to wait for the backup to apply the switchover record.")
  var timeout: Double = 30

  func run() throws {
    try reporting(json: output.json) {
      let result = try Switchover.run(node: node.node, timeout: timeout) {
        Output.progress($0 + "\n", json: output.json)
      }
      if output.json { return Output.json(result.json) }
      Output.line("switchover complete: generation \(result.generation)")
      Output.line("  new primary      \(result.newPrimary) at \(result.newPrimaryAddress)")
      Output.line("  switchover record \(result.record) (ends \(result.end))")
      Output.line("  checksum         \(result.checksum)")
      Output.line("  \(node.node) is now its backup")
    }
  }
}
