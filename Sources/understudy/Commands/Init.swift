import ArgumentParser
import AuditTrail
import Node
import Primary

struct Init: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Create a node.", subcommands: [InitPrimary.self])
}

struct InitPrimary: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "primary",
    abstract: "Create a primary node around a new or existing database (its content is the base).")

  @OptionGroup var node: NodeOption
  @Option(name: .customLong("db"), help: "The database file to protect (created if missing).")
  var database: String
  @Option(help: "HOST:PORT where this node will serve its backup.")
  var listen: String?
  @Option(help: "Size of each audit trail file in bytes.")
  var trailFileSize: Int = TrailFormat.defaultFileSize
  @OptionGroup var output: JSONFlag

  func run() throws {
    try reporting(json: output.json) {
      let config = try PrimarySetup.initPrimary(
        .init(node: node.node, database: database, listen: listen, trailFileSize: trailFileSize))
      if output.json {
        Output.json(
          .object([
            ("node", .string(node.node)), ("nodeId", .string(config.nodeId.description)),
            ("role", .string(config.role.rawValue)), ("generation", .int(Int64(config.generation.rawValue))),
            ("database", .string(config.database)), ("base", config.base.position.json),
            ("baseChecksum", .string(config.base.checksum)),
          ]))
      } else {
        Output.line("created primary node \(node.node) (id \(config.nodeId)) for \(config.database)")
        Output.line("the audit trail starts at \(config.base.position); base checksum \(config.base.checksum)")
      }
    }
  }
}
