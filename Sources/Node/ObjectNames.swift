// Which schema objects belong to the user, and which to SQLite or Understudy. One rule
// for the checksum, change capture, the statement policy and DDL replay. SQLite names
// are case-insensitive, so the prefixes are too.

public enum ObjectNames {
  /// Understudy's own tables (`understudy_state`, …): never captured, written or checksummed.
  public static func isUnderstudy(_ name: String) -> Bool { name.lowercased().hasPrefix("understudy_") }

  /// SQLite's internal objects (`sqlite_schema`, `sqlite_sequence`, autoindexes, …).
  public static func isSQLite(_ name: String) -> Bool { name.lowercased().hasPrefix("sqlite_") }

  public static func isUser(_ name: String) -> Bool { !isUnderstudy(name) && !isSQLite(name) }

  /// The same rule as a SQL condition on `column` (for example `name` of sqlite_schema).
  public static func userFilter(column: String) -> String {
    "lower(substr(\(column), 1, 7)) <> 'sqlite_' AND lower(substr(\(column), 1, 11)) <> 'understudy_'"
  }
}
