// Errors of applying the trail to a database and of the state table that says how far
// it got, each naming what and where: the primary's recovery and the backup's updater
// both throw them.

import AuditTrail
import SQLiteSupport

public enum ApplyError: Error, CustomStringConvertible {
  case notAudited(database: String)
  case foreignDatabase(database: String, belongsTo: String, node: NodeID)
  case replayFailed(txid: TransactionID, position: MATPosition, reason: String)
  /// The rows a transaction changed here moved this node's checksum of `table` other than
  /// they moved the primary's (its commit record says how): the rows differ.
  case diverged(txid: TransactionID, position: MATPosition, table: String, primary: String, here: String)

  public var description: String {
    switch self {
    case .notAudited(let database):
      "\(database) is not an Understudy database (no understudy_state table); create the node with `understudy init`"
    case .foreignDatabase(let database, let belongsTo, let node):
      "\(database) belongs to node \(belongsTo), not to this node (\(node))"
    case .diverged(let txid, let position, let table, let primary, let here):
      "transaction \(txid) at \(position) changed rows of table \(table) that differ from the primary's: on the primary it moved the table's checksum by \(primary), here by \(here). This database was changed outside replication (`understudy verify` shows the tables that differ now); nothing from this transaction on is applied"
    case .replayFailed(let txid, let position, let reason):
      "replaying transaction \(txid) at \(position) failed: \(reason)"
    }
  }
}
