// `wait --applied`: blocks until a node's database holds every commit record that ends
// at or before a position (as `sql --json` prints in `end`, or `status` in `trailEnd`).

import ArgumentParser
import AuditTrail
import Backup
import Foundation
import Node

struct Wait: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Wait until the node's database has applied everything up to a MAT position.",
    discussion:
      "POSITION is an end position: the `end` that `sql --json` prints, or a primary's `durableEnd`. Exits 0 once the database holds every commit that ends at or before it, 1 after the timeout."
  )

  @OptionGroup var node: NodeOption
  @Option(help: "SNO:RBA to wait for.")
  var applied: String
  @Option(help: "Seconds to wait before giving up.")
  var timeout: Double = 60
  @OptionGroup var output: JSONFlag

  func run() throws {
    try reporting(json: output.json) {
      let target = try MATPosition(parsing: applied)
      let result = try AppliedWait.wait(node: node.node, for: target, timeout: timeout)
      if output.json {
        Output.json(.object([("applied", result.json), ("target", target.json)]))
      } else {
        Output.line("\(node.node) has applied up to \(result) (waited for \(target))")
      }
    }
  }
}

struct Events: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Print the node's event log (NODE/events.jsonl); codes are listed in Schemas/events.md.")

  @OptionGroup var node: NodeOption
  @Flag(help: "Keep printing new events as they are logged.")
  var follow = false
  @OptionGroup var output: JSONFlag

  func run() throws {
    try reporting(json: output.json) {
      let layout = NodeLayout(root: node.node)
      _ = try layout.loadConfig()
      var offset = 0
      repeat {
        let (lines, end) = try EventLog.read(layout, from: offset)
        offset = end
        for line in lines { Output.line(output.json ? line : Self.text(line)) }
        if follow { usleep(200_000) }
      } while follow
    }
  }

  static func text(_ line: String) -> String {
    guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
      let code = object["code"] as? Int, let time = object["time"] as? String,
      let message = object["message"] as? String
    else { return line }
    return "\(time)  \(code)  \(message)"
  }
}
