import Apply
import ArgumentParser
import AuditTrail
import Node
import Primary

struct Trail: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Read a node's audit trail.", subcommands: [TrailDump.self])
}

struct TrailDump: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "dump",
    abstract: "Print decoded records: position, type, transaction, time, DDL and every row change.")

  @OptionGroup var node: NodeOption
  @Option(help: "Start at this SNO:RBA (a record boundary); default: the start of the oldest file.")
  var from: String?
  @OptionGroup var output: JSONFlag

  func run() throws {
    try reporting(json: output.json) {
      let layout = NodeLayout(root: node.node)
      _ = try layout.loadConfig()
      let start: MATPosition
      if let from {
        start = try MATPosition(parsing: from)
      } else {
        guard let first = try layout.mat.snos().first else {
          throw CommandError("\(layout.mat.path) holds no trail files")
        }
        start = MATPosition(sno: first, rba: TrailFormat.firstRBA)
      }
      let reader = try TrailReader(directory: layout.mat, from: start)
      var records: [JSON] = []
      while true {
        switch try reader.next() {
        case .record(let r):
          let t = try DecodedTransaction(r)
          if output.json {
            records.append(t.json)
          } else {
            Output.line(
              "\(t.position)  \(t.type)  txid \(t.txid)  \(isoTime(micros: t.commitMicros))  gen \(t.generation)  (ends \(t.end))"
            )
            for item in t.items {
              switch item {
              case .ddl(let sql): Output.line("  ddl     \(sql)")
              case .change(let c): Output.line("  \(c.text)")
              case .checksum(let tables):
                for t in tables {
                  Output.line(
                    "  checksum \(t.table) rows \(t.rows >= 0 ? "+" : "")\(t.rows) sum \(SetChecksum(bytes: t.sum)?.description ?? "?")"
                  )
                }
              }
            }
          }
        case .end(let end):
          finish(records, end: end, torn: nil)
          return
        case .tornTail(let end, let reason):
          finish(records, end: end, torn: reason)
          return
        }
      }
    }
  }

  private func finish(_ records: [JSON], end: MATPosition, torn: String?) {
    if output.json {
      Output.json(
        .object([
          ("records", .array(records)), ("end", end.json),
          ("tornTail", torn.map { .object([("position", end.json), ("reason", .string($0))]) } ?? .null),
        ]))
    } else {
      Output.line("end of trail at \(end)" + (torn.map { " (torn tail: \($0))" } ?? ""))
    }
  }
}
