// `understudy_state`: the position of the last commit the database holds, written in
// the same SQLite transaction as that commit's changes (invariant 1).

import AuditTrail
import SQLiteSupport

public struct CommitState: Equatable, Sendable {
  public var nodeID: NodeID
  public var lastTxid: TransactionID
  /// Start of the last commit record applied, nil before the first.
  public var last: MATPosition?
  /// Where the next record goes: the end of the last one applied.
  public var end: MATPosition

  package init(nodeID: NodeID, lastTxid: TransactionID, last: MATPosition?, end: MATPosition) {
    self.nodeID = nodeID
    self.lastTxid = lastTxid
    self.last = last
    self.end = end
  }

  static let create = """
    CREATE TABLE understudy_state(
      id INTEGER PRIMARY KEY CHECK (id = 1),
      node_id TEXT NOT NULL,
      last_txid INTEGER NOT NULL,
      last_sno INTEGER,
      last_rba INTEGER,
      end_sno INTEGER NOT NULL,
      end_rba INTEGER NOT NULL
    )
    """

  public static func read(_ db: Connection) throws -> CommitState {
    let exists = try db.scalarInt(
      "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'understudy_state'")
    guard exists == 1 else { throw ApplyError.notAudited(database: db.path) }
    let rows = try db.query(
      "SELECT node_id, last_txid, last_sno, last_rba, end_sno, end_rba FROM understudy_state WHERE id = 1")
    guard let row = rows.first, case .text(let node) = row[0], let nodeID = NodeID(node),
      case .integer(let txid) = row[1], case .integer(let endSno) = row[4], case .integer(let endRba) = row[5]
    else { throw ApplyError.notAudited(database: db.path) }
    var last: MATPosition?
    if case .integer(let sno) = row[2], case .integer(let rba) = row[3] {
      last = MATPosition(sno: UInt32(sno), rba: UInt64(rba))
    }
    return CommitState(
      nodeID: nodeID, lastTxid: TransactionID(UInt64(txid)), last: last,
      end: MATPosition(sno: UInt32(endSno), rba: UInt64(endRba)))
  }

  package func insert(_ db: Connection) throws {
    try db.execute(Self.create)
    try db.query(
      "INSERT INTO understudy_state VALUES (1, ?, ?, NULL, NULL, ?, ?)",
      [
        .text(nodeID.description), .integer(Int64(lastTxid.rawValue)), .integer(Int64(end.sno)),
        .integer(Int64(end.rba)),
      ])
  }

  /// Stores the positions, once per group commit; the row keeps its node id.
  public func save(_ db: Connection) throws {
    let statement = try db.cached(
      "UPDATE understudy_state SET last_txid = ?, last_sno = ?, last_rba = ?, end_sno = ?, end_rba = ? WHERE id = 1")
    try statement.bind([
      .integer(Int64(lastTxid.rawValue)),
      last.map { .integer(Int64($0.sno)) } ?? .null,
      last.map { .integer(Int64($0.rba)) } ?? .null,
      .integer(Int64(end.sno)), .integer(Int64(end.rba)),
    ])
    try statement.run()
  }

  /// Stores the node id too: for a state `rebased` onto another node's trail.
  public func saveWithNodeID(_ db: Connection) throws {
    try db.query("UPDATE understudy_state SET node_id = ? WHERE id = 1", [.text(nodeID.description)])
    try save(db)
  }

  /// The end of the last transaction the database committed: everything before it is
  /// durable in the MAT (invariant 1). A cached statement, for asking often.
  public static func committedEnd(_ db: Connection) throws -> MATPosition? {
    let statement = try db.cached("SELECT end_sno, end_rba FROM understudy_state WHERE id = 1")
    defer { statement.reset() }
    guard try statement.step(), case .integer(let sno) = statement.column(0),
      case .integer(let rba) = statement.column(1)
    else { return nil }
    return MATPosition(sno: UInt32(sno), rba: UInt64(rba))
  }

  /// Reads the state of the database at `path` in a read transaction of its own.
  public static func read(databaseAt path: String) throws -> CommitState {
    let db = try Connection(path: path, mode: .readOnly)
    try db.execute("BEGIN")
    defer { try? db.execute("COMMIT") }
    return try read(db)
  }

  /// The same content tied to another MAT segment (a new generation's, or a fenced
  /// node's fresh file): the next record there continues the transaction ids.
  public func rebased(nodeID: NodeID, start: MATPosition) -> CommitState {
    CommitState(nodeID: nodeID, lastTxid: lastTxid, last: nil, end: start)
  }

  public mutating func advance(txid: TransactionID, position: MATPosition, end: MATPosition) {
    lastTxid = txid
    last = position
    self.end = end
  }
}
