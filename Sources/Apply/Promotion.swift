// Making a node the primary of a new generation (takeover, and the backup's side of a
// switchover): a fresh MAT segment, the database tied to it, the config saying so.
// Each step looks before it acts, so running it again after a kill finishes the same way.

import AuditTrail
import Foundation
import Node
import SQLiteSupport

public enum Promotion {
  /// Makes the node the primary of `base.generation`, its MAT starting at `base.matStart`.
  public static func promote(_ layout: NodeLayout, to base: NodeConfig.GenerationBase) throws {
    var config = try layout.loadConfig()
    try FileManager.default.createDirectory(atPath: layout.mat.path, withIntermediateDirectories: true)
    if !layout.mat.fileExists(sno: base.matStart.sno) {
      _ = try TrailWriter.create(
        directory: layout.mat, nodeID: config.nodeId, generation: base.generation, sno: base.matStart.sno,
        fileSize: config.trailFileSize)
    }
    try rebase(database: config.database, from: base.priorNode, to: config.nodeId, start: base.matStart)
    config.role = .primary
    config.generation = base.generation
    config.matStart = base.matStart
    config.generationBase = base
    config.superseded = nil
    try layout.saveConfig(config)
    try WriteBlock.clear(layout)
    // Next hops it relayed to as a backup follow it as a primary now (its MAT retention
    // keeps theirs); their old positions must not pin its image trail.
    unlink(layout.relayed)
  }

  /// The first position of a fresh MAT segment on this node: a file number past every
  /// file it holds or has seen, so no position is ever used twice by it.
  public static func freshSegment(_ layout: NodeLayout, after position: MATPosition) throws -> MATPosition {
    var highest = position.sno
    let fenced = ((try? FileManager.default.contentsOfDirectory(atPath: layout.fenced)) ?? []).map {
      TrailDirectory(path: layout.fenced + "/" + $0)
    }
    for directory in [layout.mat, layout.image] + fenced
    where FileManager.default.fileExists(atPath: directory.path) {
      highest = max(highest, try directory.snos().last ?? 0)
    }
    return MATPosition(sno: highest + 1, rba: TrailFormat.firstRBA)
  }

  /// Ties the database to `start` in node `to`'s MAT, keeping its transaction ids. Only
  /// while the database is still tied to `from`: once done, it is not done again.
  public static func rebase(database: String, from: NodeID, to: NodeID, start: MATPosition) throws {
    let db = try Connection(path: database)
    try db.execute("BEGIN IMMEDIATE")
    do {
      let state = try CommitState.read(db)
      if state.nodeID == from {
        try state.rebased(nodeID: to, start: start).saveWithNodeID(db)
      } else if state.nodeID != to {
        throw ApplyError.foreignDatabase(database: database, belongsTo: state.nodeID.description, node: to)
      }
      try db.execute("COMMIT")
    } catch {
      try? db.execute("ROLLBACK")
      throw error
    }
  }
}
