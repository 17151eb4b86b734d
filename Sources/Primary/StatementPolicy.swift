// What an audited transaction may run. SQLite's authorizer sees every statement as it
// is prepared (trigger bodies included); this policy classifies DDL, collects the
// tables written, and refuses what the MAT could not carry to a replica.

import CUnderstudySQLite
import Node
import SQLiteSupport

final class StatementPolicy {
  /// Only user statements are judged; Understudy's own statements pass.
  var active = false
  private(set) var isDDL = false
  private(set) var refusal: String?
  private(set) var writtenTables: Set<String> = []
  /// The statement writes sqlite_sequence itself (AUTOINCREMENT's own updates are not seen here).
  private(set) var writesSequence = false
  /// `PRAGMA foreign_keys = X`: what X asks for (the statement sets it instead of running).
  private(set) var foreignKeys: Bool?
  /// Tables a CREATE TABLE or ALTER TABLE defines: checked for generated columns once it ran.
  private(set) var definedTables: [String] = []

  /// What the policy said of a single statement, remembered per SQL text.
  struct Verdict {
    var isDDL: Bool
    var refusal: String?
    var writtenTables: Set<String>
    var writesSequence: Bool
  }

  private var verdicts: [String: Verdict] = [:]

  /// The verdict on `sql`, preparing it into the connection's cache the first time;
  /// nil when `sql` is not exactly one statement (the caller takes the general path).
  func verdict(for sql: String, on connection: Connection) throws -> Verdict? {
    if let v = verdicts[sql] { return v }
    // A fresh prepare, so the authorizer surely runs (a cached handle would not ask it).
    var statements = connection.statements(sql).makeIterator()
    reset()
    active = true
    let first = try? statements.nextStatement()
    active = false
    let v = Verdict(isDDL: isDDL, refusal: refusal, writtenTables: writtenTables, writesSequence: writesSequence)
    guard first != nil, (try? statements.nextStatement()) == nil else { return nil }
    if verdicts.count >= 128 { verdicts.removeAll() }
    verdicts[sql] = v
    return v
  }

  func reset() {
    isDDL = false
    refusal = nil
    writesSequence = false
    foreignKeys = nil
    definedTables.removeAll()
    writtenTables.removeAll(keepingCapacity: true)
  }

  private static let ddl: Set<Int32> = [
    SQLITE_CREATE_INDEX, SQLITE_CREATE_TABLE, SQLITE_CREATE_TRIGGER, SQLITE_CREATE_VIEW, SQLITE_DROP_INDEX,
    SQLITE_DROP_TABLE, SQLITE_DROP_TRIGGER, SQLITE_DROP_VIEW, SQLITE_ALTER_TABLE,
  ]

  /// Pragmas that only read: anything else (user_version, journal_mode, writable_schema…)
  /// would change the database without leaving a trace in the MAT.
  private static let readOnlyPragmas: Set<String> = [
    "table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo", "foreign_key_list",
    "foreign_key_check", "integrity_check", "quick_check", "database_list", "collation_list", "function_list",
    "module_list", "pragma_list", "compile_options", "data_version", "page_count", "freelist_count",
  ]

  func authorize(_ r: Connection.AuthorizerRequest) -> Connection.AuthorizerDecision {
    guard active else { return .allow }
    let action = r.action
    if Self.ddl.contains(action) {
      isDDL = true
      // The object and the table it belongs to; ALTER TABLE passes (database, table).
      let names = action == SQLITE_ALTER_TABLE ? [r.argument2] : [r.argument1, r.argument2]
      if names.contains(where: { $0.map(ObjectNames.isUnderstudy) == true }) {
        refuse("Understudy's own tables (understudy_*) cannot be created, altered or dropped")
      }
      if action == SQLITE_CREATE_TABLE || action == SQLITE_ALTER_TABLE, let table = names[0] {
        definedTables.append(table)
      }
      return .allow
    }
    switch action {
    case SQLITE_INSERT, SQLITE_UPDATE, SQLITE_DELETE:
      guard r.database == "main", let table = r.argument1 else { return .allow }
      if ObjectNames.isUnderstudy(table) {
        refuse("table \(table) belongs to Understudy and cannot be written")
      } else if !ObjectNames.isSQLite(table) {
        writtenTables.insert(table)
      } else if table.lowercased() == "sqlite_sequence" {
        writesSequence = true
      }
    case SQLITE_CREATE_VTABLE, SQLITE_DROP_VTABLE:
      refuse("virtual tables are not supported: the session extension cannot capture their changes")
    case SQLITE_TRANSACTION:
      refuse(
        "\(r.argument1 ?? "transaction control") is not allowed: each write already runs as one audited transaction")
    case SQLITE_ATTACH, SQLITE_DETACH:
      refuse("ATTACH and DETACH are not allowed: changes to attached databases would not be audited")
    case SQLITE_PRAGMA:
      let name = (r.argument1 ?? "").lowercased()
      if name == "foreign_keys" {
        // Enforcement for the rest of the transaction: the rows a cascade changes are
        // captured like any others, and a backup applies them with enforcement off.
        guard let value = r.argument2 else { break }
        switch value.lowercased() {
        case "on", "true", "yes", "1": foreignKeys = true
        case "off", "false", "no", "0": foreignKeys = false
        default: refuse("PRAGMA foreign_keys takes ON or OFF, not \(value)")
        }
      } else if !Self.readOnlyPragmas.contains(name) {
        refuse("PRAGMA \(name) is not allowed in an audited transaction: its effect would not be in the audit trail")
      }
    case SQLITE_SAVEPOINT:
      // The capture records changes as they happen; a ROLLBACK TO would undo them in the
      // database and leave them in the commit record (the backup got rows the primary
      // never committed).
      refuse(
        "SAVEPOINT, RELEASE and ROLLBACK TO are not allowed: each write is one audited transaction, and the changes a ROLLBACK TO undid would still be in its commit record"
      )
    default:
      break
    }
    return .allow
  }

  /// Statements no authorizer call reveals, by their first keyword.
  static func refusal(byKeyword sql: String) -> String? {
    var rest = Substring(sql)
    while true {
      rest = rest.drop { $0.isWhitespace }
      if rest.hasPrefix("--") {
        rest = rest.drop { $0 != "\n" }
      } else if rest.hasPrefix("/*") {
        guard let end = rest.range(of: "*/") else { return nil }
        rest = rest[end.upperBound...]
      } else {
        break
      }
    }
    let word = rest.prefix { $0.isLetter }.uppercased()
    if word == "VACUUM" {
      return
        "VACUUM is not allowed in an audited transaction: it rebuilds the whole file outside any transaction, and changes no rows, so there is nothing for the MAT to carry. To reclaim space, run it on the database file with the node's daemon stopped (sqlite3 DB 'VACUUM'); the logical checksum stays the same"
    }
    return nil
  }

  // The statement is prepared anyway and refused before it runs, so the error can
  // quote it; SQLite's own "not authorized" would not say why.
  private func refuse(_ reason: String) {
    if refusal == nil { refusal = reason }
  }
}

/// Column names and primary-key presence of tables, cached until the schema changes.
final class SchemaCache {
  struct Table {
    /// Columns, key and declared types: what its changesets are made from.
    var shape: ChangeCapture.TableShape
    var columns: [String] { shape.columns }
    var hasPrimaryKey: Bool { shape.primaryKey.contains { $0 != 0 } }
    /// Declared with AUTOINCREMENT (by its CREATE TABLE text; a false positive only costs a read).
    var autoincrement: Bool
  }

  private var tables: [String: Table] = [:]
  private var schemaVersion: Int64 = -1
  let connection: Connection

  init(connection: Connection) { self.connection = connection }

  func invalidate() { tables.removeAll() }

  /// Drops the cache if another connection changed the schema.
  func revalidate() throws {
    let version = try connection.scalarInt("PRAGMA schema_version") ?? 0
    if version != schemaVersion {
      tables.removeAll()
      schemaVersion = version
    }
  }

  func table(_ name: String) throws -> Table {
    if let t = tables[name] { return t }
    let rows = try connection.query("SELECT name, pk, type, \"notnull\" FROM pragma_table_info(?)", [.text(name)])
    var columns: [String] = []
    var primaryKey: [UInt8] = []
    var types: [String] = []
    var notNull: [Bool] = []
    for row in rows {
      guard case .text(let column) = row[0], case .integer(let pk) = row[1], case .text(let type) = row[2] else {
        continue
      }
      columns.append(column)
      primaryKey.append(UInt8(clamping: pk))
      types.append(type)
      notNull.append(row[3] != .integer(0))
    }
    let sql = try connection.query(
      "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?", [.text(name)]
    ).first?.first
    let autoincrement = if case .text(let text) = sql { text.uppercased().contains("AUTOINCREMENT") } else { false }
    let t = Table(
      shape: .init(columns: columns, primaryKey: primaryKey, declaredTypes: types, notNull: notNull),
      autoincrement: autoincrement)
    tables[name] = t
    return t
  }
}
