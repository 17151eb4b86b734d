// `init primary`: makes a node directory around a new or existing database. The
// database's content at that moment is the base the MAT builds on.

import Apply
import AuditTrail
import Foundation
import Node
import SQLiteSupport

public enum PrimarySetup {
  public struct Options {
    public var node: String
    public var database: String
    public var listen: String?
    public var trailFileSize: Int = TrailFormat.defaultFileSize
    /// A key file to install as the node's `secret.key`; a random key when nil.
    public var secretFile: String?
    public var context: String?
    /// See NodeConfig.matRetentionSeconds and maxRetainedBytes.
    public var matRetentionSeconds: Int?
    public var maxRetainedBytes: Int?

    public init(
      node: String, database: String, listen: String? = nil, trailFileSize: Int = TrailFormat.defaultFileSize,
      secretFile: String? = nil, context: String? = nil, matRetentionSeconds: Int? = nil, maxRetainedBytes: Int? = nil
    ) {
      self.matRetentionSeconds = matRetentionSeconds
      self.maxRetainedBytes = maxRetainedBytes
      self.node = node
      self.database = database
      self.listen = listen
      self.trailFileSize = trailFileSize
      self.secretFile = secretFile
      self.context = context
    }
  }

  @discardableResult
  public static func initPrimary(_ options: Options) throws -> NodeConfig {
    let fm = FileManager.default
    let layout = NodeLayout(root: absolute(options.node))
    let database = absolute(options.database)
    try NodeSetup.checkNewDirectory(layout)
    guard options.trailFileSize >= 4096 else {
      throw NodeError.badConfig(
        path: layout.config, reason: "trail file size \(options.trailFileSize) is below 4096 bytes")
    }
    if let listen = options.listen { _ = try HostPort(parsing: listen) }
    if let seconds = options.matRetentionSeconds, seconds < 0 {
      throw NodeError.badConfig(path: layout.config, reason: "MAT retention \(seconds) s is negative")
    }
    if let bytes = options.maxRetainedBytes, bytes < options.trailFileSize {
      throw NodeError.badConfig(
        path: layout.config,
        reason:
          "max retained bytes \(bytes) is below one trail file (\(options.trailFileSize) bytes): no backup could ever be kept for"
      )
    }
    if let context = options.context { try NodeSetup.checkContext(context) }
    let secret = try options.secretFile.map { path in Array(try Secret.load(path: path)) + [0x0A] } ?? Secret.generate()

    let createdDirectory = !fm.fileExists(atPath: layout.root)
    do {
      try fm.createDirectory(atPath: layout.mat.path, withIntermediateDirectories: true)
      try fm.createDirectory(atPath: layout.state, withIntermediateDirectories: true)
      try Secret.install(secret, in: layout)
      let db = try Connection(path: database, mode: .readWriteCreate)
      try db.execute("PRAGMA journal_mode = WAL")
      if let existing = try? CommitState.read(db) {
        throw NodeError.badConfig(
          path: database,
          reason: "this database is already audited by node \(existing.nodeID); refusing to take it over")
      }
      let base = try DatabaseChecksum.compute(db)
      // Columns added by ALTER TABLE before this node existed: store their defaults now
      // (see AddedColumnDefaults), so before images of those rows are right.
      try db.execute("BEGIN IMMEDIATE")
      try AddedColumnDefaults.materialize(since: try AddedColumnDefaults.snapshot(db).mapValues { _ in [] }, db)
      // From here on every transaction moves it by what it changed.
      try IncrementalChecksum.recompute(on: db)
      try db.execute("COMMIT")
      let nodeID = NodeID()
      var config = NodeConfig(
        format: NodeConfig.currentFormat, nodeId: nodeID, role: .primary, database: database, listen: options.listen,
        generation: Generation(1), trailFileSize: options.trailFileSize, createdMicros: Clock.nowMicros(),
        base: .init(
          position: MATPosition(sno: 1, rba: TrailFormat.firstRBA), checksum: base.checksum, empty: base.tables.isEmpty),
        context: options.context)
      config.matRetentionSeconds = options.matRetentionSeconds
      config.maxRetainedBytes = options.maxRetainedBytes
      _ = try TrailWriter.create(
        directory: layout.mat, nodeID: nodeID, generation: config.generation, fileSize: options.trailFileSize)
      try layout.saveConfig(config)
      // Last: once the state table exists the database is claimed by this node.
      try db.execute("BEGIN IMMEDIATE")
      try CommitState(
        nodeID: nodeID, lastTxid: TransactionID(0), last: nil, end: MATPosition(sno: 1, rba: TrailFormat.firstRBA)
      ).insert(db)
      try db.execute("COMMIT")
      return config
    } catch {
      NodeSetup.removePartial(layout, createdDirectory: createdDirectory)
      throw error
    }
  }

  static func absolute(_ path: String) -> String { NodeSetup.absolute(path) }
}
