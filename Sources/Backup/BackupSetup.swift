// `init backup`: makes a backup node directory. The database is not copied here: the
// first `start` copies it from the primary over the authenticated link.

import AuditTrail
import Foundation
import Node

public enum BackupSetup {
  public struct Options {
    public var node: String
    public var database: String
    public var primary: String
    public var secretFile: String
    public var listen: String?
    public var context: String?
    public var retentionSeconds: Int?
    /// Size of each MAT file this node writes once it becomes a primary.
    public var trailFileSize: Int = TrailFormat.defaultFileSize

    public init(
      node: String, database: String, primary: String, secretFile: String, listen: String? = nil,
      context: String? = nil, retentionSeconds: Int? = nil, trailFileSize: Int = TrailFormat.defaultFileSize
    ) {
      self.trailFileSize = trailFileSize
      self.node = node
      self.database = database
      self.primary = primary
      self.secretFile = secretFile
      self.listen = listen
      self.context = context
      self.retentionSeconds = retentionSeconds
    }
  }

  @discardableResult
  public static func initBackup(_ options: Options) throws -> NodeConfig {
    let fm = FileManager.default
    let layout = NodeLayout(root: NodeSetup.absolute(options.node))
    let database = NodeSetup.absolute(options.database)
    try NodeSetup.checkNewDirectory(layout)
    _ = try HostPort(parsing: options.primary)
    if let listen = options.listen { _ = try HostPort(parsing: listen) }
    if let context = options.context { try NodeSetup.checkContext(context) }
    guard options.trailFileSize >= 4096 else {
      throw NodeError.badConfig(
        path: layout.config, reason: "trail file size \(options.trailFileSize) is below 4096 bytes")
    }
    if let retention = options.retentionSeconds, retention < 0 {
      throw NodeError.badConfig(path: layout.config, reason: "retention \(retention) is negative")
    }
    if let attributes = try? fm.attributesOfItem(atPath: database), (attributes[.size] as? Int ?? 0) > 0 {
      throw NodeError.badConfig(
        path: database, reason: "the backup's database already exists; the first start copies it from the primary")
    }
    let key = try Secret.load(path: options.secretFile)
    let createdDirectory = !fm.fileExists(atPath: layout.root)
    do {
      try fm.createDirectory(atPath: layout.state, withIntermediateDirectories: true)
      try fm.createDirectory(atPath: layout.image.path, withIntermediateDirectories: true)
      try Secret.install(key + [0x0A], in: layout)
      let config = NodeConfig(
        format: NodeConfig.currentFormat, nodeId: NodeID(), role: .backup, database: database, listen: options.listen,
        generation: Generation(0), trailFileSize: options.trailFileSize, createdMicros: Clock.nowMicros(),
        base: nil, context: options.context, primary: options.primary, retentionSeconds: options.retentionSeconds)
      try layout.saveConfig(config)
      return config
    } catch {
      NodeSetup.removePartial(layout, createdDirectory: createdDirectory)
      throw error
    }
  }
}
