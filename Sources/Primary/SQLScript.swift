// A SQL script as `sqlite3 .dump` and public sample schemas write it: statements that may
// be grouped by BEGIN … COMMIT, with connection PRAGMAs around them. Each explicit block
// becomes one audited transaction; each run of statements outside blocks is one too
// (what `understudy sql` always did with the whole text). Split with SQLite's own
// `sqlite3_complete`, so strings, comments and trigger bodies are read as SQLite reads
// them, without preparing anything (a statement may need the tables made before it).

import CUnderstudySQLite
import Foundation

public struct SQLScript {
  public struct Statement: Equatable, Sendable {
    public var text: String
    /// 1-based line of the script where the statement's first word is.
    public var line: Int

    /// The statement's first line, from its first word, without the comments before it.
    public var firstLine: String {
      let start = SQLScript.skipSpaceAndComments(text[...])
      let line = start.prefix { $0 != "\n" }.trimmingCharacters(in: .whitespaces)
      return line.count < start.trimmingCharacters(in: .whitespacesAndNewlines).count ? line + " …" : line
    }
  }

  /// One audited transaction of the script.
  public struct Unit {
    public var statements: [Statement]
    /// Where it starts: its BEGIN, or its first statement.
    public var line: Int
    public var explicit: Bool
  }

  public struct ScriptError: Error, CustomStringConvertible {
    public var line: Int
    public var message: String
    public var description: String { "line \(line): \(message)" }
  }

  public private(set) var units: [Unit] = []
  /// What the script asked for that is not run, one note per statement, for stderr.
  public private(set) var notes: [String] = []
  /// How many statements the script holds, run or not.
  public private(set) var statementCount = 0

  /// Connection settings a dump or a schema script may set: they change how this session
  /// runs, not the data (or, for journal_mode, what the node decides), so they are left out.
  static let ignoredPragmas: Set<String> = [
    "journal_mode", "synchronous", "cache_size", "temp_store", "busy_timeout", "locking_mode", "mmap_size",
    "encoding", "page_size", "cache_spill", "threads", "analysis_limit", "automatic_index",
  ]

  public init(_ text: String) throws {
    var foreignKeys: Bool?
    var open: Unit?
    var loose: Unit?
    func closeLoose() {
      if let l = loose { units.append(l) }
      loose = nil
    }
    for statement in Self.statements(text) {
      statementCount += 1
      let words = Self.words(statement.text, count: 3)
      switch words.first {
      case "BEGIN":
        if open != nil { throw ScriptError(line: statement.line, message: "BEGIN inside a BEGIN … COMMIT block") }
        if let mode = words.dropFirst().first, !["DEFERRED", "IMMEDIATE", "EXCLUSIVE", "TRANSACTION"].contains(mode) {
          throw ScriptError(line: statement.line, message: "cannot read `\(statement.firstLine)`")
        }
        closeLoose()
        open = Unit(statements: [], line: statement.line, explicit: true)
      case "COMMIT", "END":
        guard let block = open else {
          throw ScriptError(line: statement.line, message: "\(words[0]) without a BEGIN before it")
        }
        units.append(block)
        open = nil
      case "ROLLBACK" where words.count < 2 || words[1] == "TRANSACTION":
        guard let block = open else { throw ScriptError(line: statement.line, message: "ROLLBACK without a BEGIN") }
        notes.append(
          "line \(block.line): the BEGIN … ROLLBACK block ending at line \(statement.line) is not run, as SQLite would not keep it"
        )
        open = nil
      case "PRAGMA":
        let (name, value) = Self.pragma(statement.text)
        if Self.ignoredPragmas.contains(name) {
          notes.append("line \(statement.line): `\(statement.firstLine)` ignored: the node sets up its own connection")
          continue
        }
        if name == "foreign_keys", let value, open == nil {
          // A connection setting: it holds for every later transaction of the script.
          switch value {
          case "ON", "TRUE", "YES", "1": foreignKeys = true
          case "OFF", "FALSE", "NO", "0": foreignKeys = false
          default: break  // the policy names what is wrong with it
          }
          if foreignKeys != nil {
            // The transaction under way takes it from here on (Transaction runs it), later ones first thing.
            if loose != nil { loose!.statements.append(statement) }
            continue
          }
        }
        fallthrough
      default:
        if open != nil {
          if open!.statements.isEmpty, foreignKeys == true {
            open!.statements.append(Statement(text: "PRAGMA foreign_keys = ON", line: open!.line))
          }
          open!.statements.append(statement)
        } else {
          if loose == nil {
            loose = Unit(statements: [], line: statement.line, explicit: false)
            if foreignKeys == true {
              loose!.statements.append(Statement(text: "PRAGMA foreign_keys = ON", line: statement.line))
            }
          }
          loose!.statements.append(statement)
        }
      }
    }
    if let block = open {
      throw ScriptError(line: block.line, message: "BEGIN without a COMMIT: the script ends inside its block")
    }
    closeLoose()
  }

  /// The statements of `text`, each ended where `sqlite3_complete` says a statement ends.
  static func statements(_ text: String) -> [Statement] {
    var out: [Statement] = []
    let utf8 = Array(text.utf8)
    var start = 0
    var line = 1
    var startLine = 1
    var i = 0
    func emit(_ end: Int) {
      let piece = String(decoding: utf8[start..<end], as: UTF8.self)
      let body = skipSpaceAndComments(piece[...])
      if !body.isEmpty && body != ";" {
        let lead = piece[..<body.startIndex].filter { $0 == "\n" }.count
        out.append(Statement(text: piece, line: startLine + lead))
      }
    }
    while i < utf8.count {
      if utf8[i] == UInt8(ascii: "\n") { line += 1 }
      if utf8[i] == UInt8(ascii: ";") {
        let candidate = Array(utf8[start...i]) + [0]
        let complete = candidate.withUnsafeBufferPointer {
          $0.baseAddress!.withMemoryRebound(to: CChar.self, capacity: candidate.count) { sqlite3_complete($0) }
        }
        if complete != 0 {
          emit(i + 1)
          start = i + 1
          startLine = line
        }
      }
      i += 1
    }
    if start < utf8.count { emit(utf8.count) }
    return out
  }

  static func skipSpaceAndComments(_ s: Substring) -> Substring {
    var rest = s
    while true {
      rest = rest.drop { $0.isWhitespace }
      if rest.hasPrefix("--") {
        rest = rest.drop { $0 != "\n" }
      } else if rest.hasPrefix("/*") {
        guard let end = rest.range(of: "*/") else { return rest[rest.endIndex...] }
        rest = rest[end.upperBound...]
      } else {
        return rest
      }
    }
  }

  /// The first `count` words, upper-cased (a word: letters, digits, underscores).
  static func words(_ sql: String, count: Int) -> [String] {
    var rest = skipSpaceAndComments(sql[...])
    var out: [String] = []
    while out.count < count {
      let word = rest.prefix { $0.isLetter || $0.isNumber || $0 == "_" }
      if word.isEmpty { break }
      out.append(word.uppercased())
      rest = skipSpaceAndComments(rest[word.endIndex...])
    }
    return out
  }

  /// `PRAGMA [schema.]name [= value | (value)]`: the name lower-cased, the value upper-cased.
  static func pragma(_ sql: String) -> (name: String, value: String?) {
    var rest = skipSpaceAndComments(sql[...]).dropFirst("PRAGMA".count)
    rest = skipSpaceAndComments(rest)
    var name = String(rest.prefix { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "." })
    if let dot = name.lastIndex(of: ".") { name = String(name[name.index(after: dot)...]) }
    rest = rest.drop { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "." }
    rest = skipSpaceAndComments(rest)
    guard let first = rest.first, first == "=" || first == "(" else { return (name.lowercased(), nil) }
    let value = rest.dropFirst().prefix { $0 != ")" && $0 != ";" }.trimmingCharacters(in: .whitespacesAndNewlines)
    return (name.lowercased(), value.trimmingCharacters(in: CharacterSet(charactersIn: "'\"")).uppercased())
  }
}
