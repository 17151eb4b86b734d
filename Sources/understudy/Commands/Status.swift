import ArgumentParser
import Primary

struct Status: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Show a node's role, generation and positions.")

  @OptionGroup var node: NodeOption
  @OptionGroup var output: JSONFlag

  func run() throws {
    try reporting(json: output.json) {
      let s = try NodeStatus.read(node: node.node)
      if output.json {
        Output.json(s.json)
        return
      }
      Output.line("node        \(s.node) (id \(s.nodeId))")
      Output.line("role        \(s.role), generation \(s.generation)")
      Output.line("database    \(s.database)")
      Output.line(
        "trail end   \(s.trailEnd) (\(s.trailFiles) file\(s.trailFiles == 1 ? "" : "s"), last transaction \(s.lastTxid))"
      )
      Output.line("durable end \(s.durableEnd)")
      Output.line(
        "database at \(s.databaseEnd)"
          + (s.databaseEnd < s.trailEnd ? " (behind its trail: the next open replays the rest)" : ""))
      if let torn = s.tornTail { Output.line("torn tail   at \(torn) (cut at the next open)") }
    }
  }
}
