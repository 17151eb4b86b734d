import ArgumentParser
import Dispatch
import Foundation
import Node
import Primary
import SQLiteSupport

struct SQL: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Run SQL on a primary as one audited transaction, or one transaction per input line.",
    discussion: """
      Without --each-line, all statements (arguments joined, or --file) run as ONE transaction,
      except that each BEGIN … COMMIT block (as in a `sqlite3 .dump`) is a transaction of its
      own, and the statements between blocks one each; the connection PRAGMAs a dump sets
      are honoured (foreign_keys) or ignored with a note on stderr. Errors name the line.
      With --each-line, each line of --file (standard input by default) is its own transaction;
      with --json one line is printed per transaction as soon as it is durable. The first line
      that fails stops the run: lines before it are committed, lines after it are not run.
      """)

  @OptionGroup var node: NodeOption
  @OptionGroup var output: JSONFlag
  @Option(help: "Read the SQL from this file.")
  var file: String?
  @Flag(help: "Each input line is its own transaction.")
  var eachLine = false
  @Argument(help: "SQL statements.")
  var sql: [String] = []

  func validate() throws {
    if eachLine && !sql.isEmpty { throw ValidationError("--each-line reads --file or standard input, not arguments") }
    if !eachLine && sql.isEmpty && file == nil { throw ValidationError("give SQL as arguments or with --file") }
    if !eachLine && !sql.isEmpty && file != nil {
      throw ValidationError("give SQL as arguments or with --file, not both")
    }
  }

  func run() throws {
    try reporting(json: output.json) {
      let db = try AuditedDatabase.open(node: node.node)
      defer { db.close() }
      if eachLine {
        try runEachLine(db)
      } else {
        let text = try file.map(readFile) ?? sql.map { $0.hasSuffix(";") ? $0 : $0 + ";" }.joined(separator: "\n")
        try runScript(db, text: text)
      }
    }
  }

  static func json(_ commit: CommitInfo?, line: Int? = nil) -> JSON {
    var fields: [(String, JSON)] = line.map { [("line", .int(Int64($0)))] } ?? []
    fields += [
      ("txid", commit.map { .int(Int64($0.txid.rawValue)) } ?? .null),
      ("position", commit?.position.json ?? .null),
      ("end", commit?.end.json ?? .null),
    ]
    if let pending = commit?.pending { fields.append(("pending", .string(pending))) }
    return .object(fields)
  }

  /// One transaction's outcome, as text or JSON, with its input line when there are several.
  static func report(_ commit: CommitInfo?, line: Int?, json: Bool) {
    warnIfPending(commit, line: line)
    let prefix = line.map { "line \($0): " } ?? ""
    if json {
      Output.json(Self.json(commit, line: line))
    } else if let commit {
      Output.line(prefix + "committed transaction \(commit.txid) at \(commit.position) (ends \(commit.end))")
    } else {
      Output.line(prefix + (line == nil ? "no changes; nothing committed" : "no changes"))
    }
  }

  /// A committed transaction the database could not take yet: committed all the same
  /// (exit 0), with a warning on stderr saying so and what to do.
  private static func warnIfPending(_ commit: CommitInfo?, line: Int?) {
    guard let commit, let pending = commit.pending else { return }
    Output.error(
      (line.map { "line \($0): " } ?? "")
        + "warning: transaction \(commit.txid) is committed (durable in the Master Audit Trail at \(commit.position)), but the database could not take it yet (\(pending)); the node's next write or open applies it, once there is space"
    )
  }

  /// Lines are queued without waiting so that they share syncs (group commit); they
  /// run and complete in input order, and the first failure stops the rest.
  private func runEachLine(_ db: AuditedDatabase) throws {
    let input: FileHandle
    if let file {
      guard let handle = FileHandle(forReadingAtPath: file) else {
        throw CommandError("cannot read \(file): no such file or not readable")
      }
      input = handle
    } else {
      input = FileHandle.standardInput
    }
    let run = EachLineRun(json: output.json)
    let window = DispatchSemaphore(value: 256)
    var number = 0
    for line in LineReader(input) {
      number += 1
      let text = line.trimmingCharacters(in: .whitespaces)
      if run.failed { break }  // the lines after the first failure are not run, nor read
      if text.isEmpty { continue }
      window.wait()
      let lineNumber = number
      try db.submit(
        { transaction in
          guard !run.failed else { throw CommandError("skipped") }
          do { try transaction.execute(text) } catch {
            run.fail()
            throw error
          }
        },
        completion: { result in
          run.report(line: lineNumber, result)
          window.signal()
        })
    }
    // Wait for every queued line, then give the slots back: libdispatch refuses to
    // dispose of a semaphore below its initial value.
    for _ in 0..<256 { window.wait() }
    for _ in 0..<256 { window.signal() }
    if let failure = run.failure { throw failure }
  }

  /// The script's transactions in order: its BEGIN … COMMIT blocks, and the statements
  /// between them. The first failure stops the run; the transactions before it stay.
  private func runScript(_ db: AuditedDatabase, text: String) throws {
    func place(_ line: Int) -> String { file.map { "\($0):\(line)" } ?? "line \(line)" }
    let script: SQLScript
    do { script = try SQLScript(text) } catch let error as SQLScript.ScriptError {
      throw CommandError("\(place(error.line)): \(error.message)")
    }
    for note in script.notes { Output.error("note: " + note) }
    if script.units.isEmpty {
      guard script.statementCount == 0 else { return Self.report(nil, line: nil, json: output.json) }
      throw PrimaryError.emptySQL
    }
    let several = script.units.count > 1
    for (index, unit) in script.units.enumerated() {
      let commit: CommitInfo?
      do {
        (_, commit) = try db.write { transaction in
          for statement in unit.statements {
            do { try transaction.execute(statement.text) } catch { throw ScriptFailure(statement, error) }
          }
        }
      } catch let failure as ScriptFailure {
        let kept =
          index == 0
          ? ""
          : index == 1
            ? " (the transaction before it stays committed)" : " (the \(index) transactions before it stay committed)"
        throw CommandError(
          "\(place(failure.statement.line)): \(failure.reason)\(kept)\n  in: \(failure.statement.firstLine)")
      }
      Self.report(commit, line: several ? unit.line : nil, json: output.json)
    }
  }

  private func readFile(_ path: String) throws -> String {
    guard let data = FileManager.default.contents(atPath: path) else {
      throw CommandError("cannot read \(path): no such file or not readable")
    }
    guard let text = String(data: data, encoding: .utf8) else { throw CommandError("\(path) is not UTF-8 text") }
    return text
  }
}

/// Shared by the line submitter and the writer thread's completions.
final class EachLineRun: @unchecked Sendable {
  // @unchecked: every field is read and written under `lock`.
  private let lock = NSLock()
  private var stopped = false
  private(set) var failure: CommandError?

  var failed: Bool {
    lock.lock()
    defer { lock.unlock() }
    return stopped
  }
  let json: Bool

  init(json: Bool) { self.json = json }

  func fail() {
    lock.lock()
    stopped = true
    lock.unlock()
  }

  func report(line: Int, _ result: Result<CommitInfo?, Error>) {
    lock.lock()
    defer { lock.unlock() }
    switch result {
    case .success(let commit):
      SQL.report(commit, line: line, json: json)
    case .failure(let error):
      // Whatever failed (the line, its group, the node), nothing after it may commit:
      // the writer runs the next group only after this completion returns.
      stopped = true
      if failure == nil { failure = CommandError("line \(line): \(error)") }
    }
  }
}

/// A statement of a script failed: which, and why without the statement SQLite quotes.
struct ScriptFailure: Error {
  var statement: SQLScript.Statement
  var reason: String

  init(_ statement: SQLScript.Statement, _ error: Error) {
    self.statement = statement
    switch error {
    case PrimaryError.statementRefused(_, let why): reason = "statement refused: " + why
    case let error as SQLiteError: reason = "\(error.message) (SQLite code \(error.code))"
    default: reason = "\(error)"
    }
  }
}

struct CommandError: Error, CustomStringConvertible {
  var description: String
  init(_ description: String) { self.description = description }
}

/// Lines of a file handle, read in chunks; a final line without a newline counts.
struct LineReader: Sequence, IteratorProtocol {
  let handle: FileHandle
  var buffer = Data()
  var done = false

  init(_ handle: FileHandle) { self.handle = handle }

  mutating func next() -> String? {
    while true {
      if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
        let line = buffer[buffer.startIndex..<newline]
        buffer = Data(buffer[(newline + 1)...])
        return String(decoding: line, as: UTF8.self)
      }
      if done {
        guard !buffer.isEmpty else { return nil }
        defer { buffer = Data() }
        return String(decoding: buffer, as: UTF8.self)
      }
      let chunk = handle.availableData
      if chunk.isEmpty { done = true } else { buffer.append(chunk) }
    }
  }
}
