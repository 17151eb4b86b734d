import ArgumentParser
import AuditTrail
import Backup
import Link
import MIMIX
import Node
import Primary

struct Init: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Create a node.", subcommands: [InitPrimary.self, InitBackup.self])
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
  @Option(help: "A file holding the link's pre-shared key (default: a new random key in NODE/secret.key).")
  var secretFile: String?
  @Option(
    help:
      "The replication context's name; the backup must use the same. A positive integer is a MIMIX context ID: the node is registered as that context under the server's home."
  )
  var context: String?
  @OptionGroup var registration: ContextRegistration
  @Option(help: "Keep MAT files at least this many seconds, for audit, once no backup needs them (default: none).")
  var matRetention: Int?
  @Option(help: "The most MAT one backup may hold back, in bytes; past it, it needs a full copy (default: no cap).")
  var maxRetainedBytes: Int?
  @OptionGroup var tls: TLSOptions
  @OptionGroup var output: JSONFlag

  func run() throws {
    try reporting(json: output.json) {
      let files = try tls.files()
      var config = try PrimarySetup.initPrimary(
        .init(
          node: node.node, database: database, listen: listen, trailFileSize: trailFileSize, secretFile: secretFile,
          context: context, matRetentionSeconds: matRetention, maxRetainedBytes: maxRetainedBytes))
      config = try tls.record(files, node: node.node)
      let base = config.base!
      let registered = try registration.register(context: context, node: node.node, role: .production, production: nil)
      if output.json {
        Output.json(
          .object([
            ("node", .string(node.node)), ("nodeId", .string(config.nodeId.description)),
            ("role", .string(config.role.rawValue)), ("generation", .int(Int64(config.generation.rawValue))),
            ("database", .string(config.database)), ("base", base.position.json),
            ("baseChecksum", .string(base.checksum)), ("context", .string(config.contextName)),
            ("secretFile", .string(NodeLayout(root: NodeSetup.absolute(node.node)).secretKey)),
            ("registered", registered?.json ?? .null),
          ]))
      } else {
        registered.map { Output.line($0.text) }
        Output.line("created primary node \(node.node) (id \(config.nodeId)) for \(config.database)")
        Output.line("the audit trail starts at \(base.position); base checksum \(base.checksum)")
        Output.line(
          "the link secret is \(NodeLayout(root: NodeSetup.absolute(node.node)).secretKey): copy it to the backup (mode 0600)"
        )
      }
    }
  }
}

struct InitBackup: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "backup",
    abstract: "Create a backup node; its first start copies the primary's database over the link.")

  @OptionGroup var node: NodeOption
  @Option(name: .customLong("db"), help: "Where the backup's copy of the database will live (must not exist yet).")
  var database: String
  @Option(help: "HOST:PORT of the primary.")
  var primary: String
  @Option(help: "The primary's secret.key, copied into this node (mode 0600).")
  var secretFile: String
  @Option(help: "HOST:PORT where this node will serve once it becomes a primary.")
  var listen: String?
  @Option(
    help:
      "The replication context's name; must match the primary's. A positive integer is a MIMIX context ID, registered under the server's home."
  )
  var context: String?
  @OptionGroup var registration: ContextRegistration
  @Option(help: "Seconds to keep applied image-trail files (default 86400; 0 removes them once applied).")
  var retention: Int?
  @Option(
    help: "Size of each MAT file in bytes once this node becomes a primary (its image trail mirrors the primary's).")
  var trailFileSize: Int = TrailFormat.defaultFileSize
  @OptionGroup var tls: TLSOptions
  @OptionGroup var output: JSONFlag

  func run() throws {
    try reporting(json: output.json) {
      let files = try tls.files()
      var config = try BackupSetup.initBackup(
        .init(
          node: node.node, database: database, primary: primary, secretFile: secretFile, listen: listen,
          context: context, retentionSeconds: retention, trailFileSize: trailFileSize))
      config = try tls.record(files, node: node.node)
      let registered = try registration.register(
        context: context, node: node.node, role: .recovery, production: primary)
      if output.json {
        Output.json(
          .object([
            ("node", .string(node.node)), ("nodeId", .string(config.nodeId.description)),
            ("role", .string(config.role.rawValue)), ("generation", .int(Int64(config.generation.rawValue))),
            ("database", .string(config.database)), ("primary", .string(primary)),
            ("context", .string(config.contextName)), ("registered", registered?.json ?? .null),
          ]))
      } else {
        registered.map { Output.line($0.text) }
        Output.line("created backup node \(node.node) (id \(config.nodeId)) of primary \(primary)")
        Output.line(
          "its first `understudy start --node \(node.node)` copies the primary's database into \(config.database)")
      }
    }
  }
}

/// `--tls-cert`, `--tls-key`, `--tls-ca`: the operator's own PKI for the link, all three
/// or none (none: a self-signed certificate in memory, authenticated by the key proof).
struct TLSOptions: ParsableArguments {
  @Option(name: .customLong("tls-cert"), help: "This node's certificate (PEM), issued by the --tls-ca.")
  var certificate: String?
  @Option(name: .customLong("tls-key"), help: "The private key of --tls-cert (PEM, mode 0600).")
  var key: String?
  @Option(name: .customLong("tls-ca"), help: "The CA (PEM) the peer's certificate must chain to.")
  var ca: String?

  /// The files, checked (readable, the key private and matching), before anything is made.
  func files() throws -> TLSFiles? {
    let given = [("--tls-cert", certificate), ("--tls-key", key), ("--tls-ca", ca)]
    guard given.contains(where: { $0.1 != nil }) else { return nil }
    let missing = given.filter { $0.1 == nil }.map(\.0)
    guard missing.isEmpty else {
      throw ValidationError(
        "an operator's PKI needs --tls-cert, --tls-key and --tls-ca together; missing \(missing.joined(separator: ", "))"
      )
    }
    let files = TLSFiles(
      certificate: NodeSetup.absolute(certificate!), key: NodeSetup.absolute(key!), ca: NodeSetup.absolute(ca!))
    try LinkSecurity.pki(files).check()
    return files
  }

  /// Writes the files into the new node's config.
  func record(_ files: TLSFiles?, node: String) throws -> NodeConfig {
    let layout = NodeLayout(root: NodeSetup.absolute(node))
    var config = try layout.loadConfig()
    guard let files else { return config }
    config.tls = files
    try layout.saveConfig(config)
    return config
  }
}

/// `--name` and `--home`: a node whose context is an ID is registered on the server.
struct ContextRegistration: ParsableArguments {
  @Option(help: "This server's name in the context (what `rtdr -s` names; default: the host name).")
  var name: String?
  @OptionGroup var home: HomeOption

  struct Registered {
    var config: ContextConfig
    var home: ServerHome
    var text: String {
      "registered as context \(config.id) (server \(config.server), \(config.role)) in \(home.configPath(config.id))"
    }
    var json: JSON {
      .object([
        ("context", .int(Int64(config.id.rawValue))), ("server", .string(config.server)),
        ("role", .string(config.role.rawValue)), ("file", .string(home.configPath(config.id))),
      ])
    }
  }

  func register(context: String?, node: String, role: ContextRole, production: String?) throws -> Registered? {
    guard let id = ContextID.from(contextName: context) else {
      guard name == nil, home.home == nil else {
        throw ValidationError(
          "--name and --home register a MIMIX context: give --context a context ID (a positive integer)")
      }
      return nil
    }
    let home = home.resolved
    let config = try home.register(
      id: id, node: node, server: name ?? ServerName.local(), role: role, production: production)
    return Registered(config: config, home: home)
  }
}
