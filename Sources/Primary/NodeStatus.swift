// What `status` reports for a primary: role, generation, and the positions that matter
// (where the trail ends, how far it is durable, what the database holds).

import Apply
import AuditTrail
import Node
import SQLiteSupport

public struct NodeStatus: Sendable {
  public var node: String
  public var nodeId: NodeID
  public var role: Role
  public var generation: Generation
  public var database: String
  /// The end of the last complete record in the MAT.
  public var trailEnd: MATPosition
  /// Up to where the MAT is on stable storage (status syncs the last file to say so).
  public var durableEnd: MATPosition
  /// The end of the last commit the database holds; behind `trailEnd` only after a crash
  /// until the next open replays the rest.
  public var databaseEnd: MATPosition
  public var lastTxid: TransactionID
  public var trailFiles: Int
  public var tornTail: MATPosition?
  /// The backups attached to the running daemon, with what they acknowledged and applied.
  public var backups: [AttachedBackup]
  /// Why writes are refused (a switchover in progress, a takeover elsewhere), if they are.
  public var writesBlocked: String?
  /// Why this primary cannot learn of a takeover (`state/backups.json` unreadable), if so:
  /// its daemon refuses to serve until the file is repaired.
  public var fencingProblem: String?
  /// The MAT on disk: its bytes, and the first position still kept (older files were
  /// purged once nothing needed them).
  public var matBytes: Int
  public var oldestKept: MATPosition?
  /// The backups the MAT is kept for, and from where.
  public var retainedFor: [RetainedBackup]

  public static func read(node: String) throws -> NodeStatus {
    let layout = NodeLayout(root: node)
    let config = try layout.loadConfig()
    let state = try CommitState.read(databaseAt: config.database)
    let reader = try TrailReader(directory: layout.mat, from: state.last ?? state.end)
    var end = state.end
    var torn: MATPosition?
    var txid = state.lastTxid
    loop: while true {
      switch try reader.next() {
      case .record(let r):
        end = r.end
        txid = r.record.txid
      case .end(let p):
        end = p
        break loop
      case .tornTail(let p, _):
        end = p
        torn = p
        break loop
      }
    }
    // Whatever a writer has written is durable once its file is synced; a reader may sync it too.
    try FileHandle(path: layout.mat.filePath(sno: end.sno), flags: O_RDONLY).syncData()
    let footprint = try MATRetention.footprint(layout)
    return NodeStatus(
      node: layout.root, nodeId: config.nodeId, role: config.role, generation: config.generation,
      database: config.database, trailEnd: end, durableEnd: end, databaseEnd: state.end, lastTxid: txid,
      trailFiles: try layout.mat.snos().count, tornTail: torn,
      backups: DaemonLock.isHeld(layout) ? try PrimaryServer.readAttached(layout) : [],
      writesBlocked: WriteBlock.reason(layout), fencingProblem: fencingProblem(layout), matBytes: footprint.bytes,
      oldestKept: footprint.oldest, retainedFor: try MATRetention.registered(layout))
  }

  static func fencingProblem(_ layout: NodeLayout) -> String? {
    do {
      _ = try Fencing.knownBackups(layout)
      return nil
    } catch {
      return "\(error)"
    }
  }

  public var json: JSON {
    .object([
      ("node", .string(node)), ("nodeId", .string(nodeId.description)), ("role", .string(role.rawValue)),
      ("generation", .int(Int64(generation.rawValue))), ("database", .string(database)),
      ("trailEnd", trailEnd.json), ("durableEnd", durableEnd.json), ("databaseEnd", databaseEnd.json),
      ("lastTxid", .int(Int64(lastTxid.rawValue))), ("trailFiles", .int(Int64(trailFiles))),
      ("tornTail", tornTail?.json ?? .null),
      (
        "backups",
        .array(
          backups.map {
            .object([
              ("nodeId", .string($0.nodeID.description)), ("peer", .string($0.peer)),
              ("acked", $0.acked?.json ?? .null), ("applied", $0.applied?.json ?? .null),
            ])
          })
      ),
      ("writesBlocked", writesBlocked.map(JSON.string) ?? .null),
      ("fencingProblem", fencingProblem.map(JSON.string) ?? .null),
      ("matBytes", .int(Int64(matBytes))), ("oldestKept", oldestKept?.json ?? .null),
      (
        "retainedFor",
        .array(
          retainedFor.map {
            .object([
              ("nodeId", .string($0.node.description)), ("needs", $0.needs.json),
              ("dropped", .bool($0.droppedMicros != nil)),
            ])
          })
      ),
    ])
  }
}

#if canImport(Glibc)
  import Glibc
#endif
