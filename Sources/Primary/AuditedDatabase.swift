// The primary's write path (invariant 1): every transaction's commit record is durable
// in the MAT before SQLite commits, and the database stores the position of its last
// commit in the same SQLite transaction.
//
// One thread at a time owns the connection and the trail writer (GroupCommitter says
// who). It runs everything queued as one group: each closure in its own savepoint with
// its own captured changes (its own commit record), then one MAT write and one
// fdatasync for the group, then one SQLite COMMIT. That is group commit: concurrent
// writers share syncs while each transaction keeps its own record.

import Apply
import AuditTrail
import Foundation
import Node
import SQLiteSupport

/// Where a committed transaction lies in the MAT.
public struct CommitInfo: Codable, Sendable, Equatable {
  public var txid: TransactionID
  /// Where the commit record starts.
  public var position: MATPosition
  /// The position right after it.
  public var end: MATPosition
  /// Set when the transaction is committed (durable in the MAT, invariant 1) but the
  /// database could not take it yet, and why: the next write or open applies it.
  public var pending: String?

  public init(txid: TransactionID, position: MATPosition, end: MATPosition, pending: String? = nil) {
    self.txid = txid
    self.position = position
    self.end = end
    self.pending = pending
  }
}

/// What `open` found and did.
public struct RecoveryReport: Sendable {
  public var replayed: Int
  public var tornTail: MATPosition?
  public var tornTailReason: String?
  public var tornBytes: Int
  public var end: MATPosition
}

public final class AuditedDatabase: Sendable {
  public let layout: NodeLayout
  public let config: NodeConfig
  public let recovery: RecoveryReport
  private let committer: GroupCommitter

  /// Opens a primary node's database, replaying MAT commits it lacks and cutting a torn tail.
  public static func open(node: String) throws -> AuditedDatabase {
    let layout = NodeLayout(root: node)
    let config = try layout.loadConfig()
    guard config.role == .primary else {
      throw NodeError.wrongRole(node: node, role: config.role, needed: .primary, command: "writing")
    }
    guard FileManager.default.fileExists(atPath: config.database) else {
      throw NodeError.databaseMissing(node: node, database: config.database)
    }
    let writer = try Writer(layout: layout, config: config)
    let report = try writer.openAndRecover()
    return AuditedDatabase(layout: layout, config: config, committer: GroupCommitter(writer), recovery: report)
  }

  private init(layout: NodeLayout, config: NodeConfig, committer: GroupCommitter, recovery: RecoveryReport) {
    self.layout = layout
    self.config = config
    self.committer = committer
    self.recovery = recovery
  }

  deinit { committer.close() }

  /// Stops the writer once the queued transactions are done. Later writes fail.
  public func close() { committer.close() }

  /// Runs `body` as one audited transaction and returns once it is durable.
  /// `commit` is nil when the transaction changed nothing (no record is written).
  public func write<T>(_ body: (Transaction) throws -> T) throws -> (value: T, commit: CommitInfo?) {
    try committer.write(body)
  }

  /// Queues `body` without waiting; `completion` runs on a committing thread once the
  /// transaction is durable or has failed. Requests run in the order they are queued.
  public func submit(
    _ body: @escaping @Sendable (Transaction) throws -> Void,
    completion: @escaping @Sendable (Result<CommitInfo?, Error>) -> Void
  ) throws {
    try committer.enqueue(WriteRequest(body: body, completion: completion))
  }

  /// Appends a control record (a switchover's, or its cancellation) as the next record,
  /// past the node's write block: the procedure that set the block writes the last word.
  /// A switchover's records go in past the write block the switchover itself set.
  public func writeControlRecord(_ type: RecordType, payload: [UInt8]) throws -> CommitInfo {
    try committer.exclusive { try $0.appendControl(type, payload: payload, bypassingWriteBlock: true) }
  }

  /// An event marker (`rtmark`), in MAT order among the commits; refused like a write
  /// while writes are blocked (a fenced or superseded primary marks nothing).
  public func writeMarker(_ marker: MarkerPayload) throws -> CommitInfo {
    try committer.exclusive { try $0.appendControl(.marker, payload: marker.encoded(), bypassingWriteBlock: false) }
  }

  public func write<T: Sendable>(_ body: @escaping @Sendable (Transaction) throws -> T) async throws -> (
    value: T, commit: CommitInfo?
  ) {
    let box = ResultBox<T>()
    let commit: CommitInfo? = try await withCheckedThrowingContinuation { continuation in
      do {
        try committer.enqueue(
          WriteRequest(
            body: { box.value = try body($0) },
            completion: { continuation.resume(with: $0) }))
      } catch {
        continuation.resume(throwing: error)
      }
    }
    return (box.value!, commit)
  }
}

/// The writer thread's state: the connection, the trail writer, the commit state.
final class Writer {
  let layout: NodeLayout
  let config: NodeConfig
  let connection: Connection
  let policy = StatementPolicy()
  let schema: SchemaCache
  /// Records row changes while a request's body runs (and only then).
  let capture: ChangeCapture
  /// Keeps the database checksum while replay on open applies the MAT's commits (on the capture's hook).
  lazy var tracker = ChecksumTracker(connection: connection, capture: capture)
  var trail: TrailWriter!
  var state: CommitState!
  /// Set, with the reason, while the MAT holds commits the database could not take (its
  /// COMMIT failed: a full disk, an I/O error). Each write first tries to take them in;
  /// until that succeeds nothing new is written.
  var behind: String?
  /// Set when the node stopped being the primary this writer was opened for; every
  /// later write fails with it (a reopen reads the node afresh).
  var retired: PrimaryError?
  /// Only the procedure that set the write block (a switchover writing its record) writes past it.
  var bypassWriteBlock = false
  private var dataVersion: SQLiteValue = .null

  init(layout: NodeLayout, config: NodeConfig) throws {
    self.layout = layout
    self.config = config
    connection = try Connection(path: config.database)
    try connection.execute("PRAGMA journal_mode = WAL")
    // NORMAL is safe with the MAT: the WAL may lose its tail on power loss, and the MAT replays it.
    try connection.execute("PRAGMA synchronous = NORMAL")
    // Checkpoints are SQLite's own: passive, by this connection after a commit that finds
    // the WAL past 1,000 frames. A thread of our own checkpointing beside the writer was
    // slower (its database syncs came between the MAT's: 4,900 commits/s against 7,200
    // in `bench commit`), and a writer that never pauses left its WAL growing.
    connection.setBusyTimeout(milliseconds: 30_000)
    schema = SchemaCache(connection: connection)
    capture = ChangeCapture(connection: connection, accept: ObjectNames.isUser)
    connection.setAuthorizer { [policy] in policy.authorize($0) }
  }

  func openAndRecover() throws -> RecoveryReport {
    try connection.execute("BEGIN IMMEDIATE")
    do {
      let outcome = try catchUp()
      do { try connection.execute("COMMIT") } catch {
        // Commits the MAT holds and the database cannot take (a full disk): say which.
        throw PrimaryError.databaseBehindMAT(database: config.database, reason: "\(error)")
      }
      return RecoveryReport(
        replayed: outcome.replayed, tornTail: outcome.tornTail?.position, tornTailReason: outcome.tornTail?.reason,
        tornBytes: outcome.tornTail?.bytes ?? 0, end: outcome.trailEnd)
    } catch {
      try? connection.execute("ROLLBACK")
      throw error
    }
  }

  private func catchUp() throws -> Recovery.Outcome {
    let outcome = try Recovery.catchUp(connection, trail: layout.mat, nodeID: config.nodeId, tracker: tracker)
    trail = try TrailWriter(
      directory: layout.mat, nodeID: config.nodeId, generation: outcome.generation, fileSize: config.trailFileSize,
      end: outcome.trailEnd, lastCRC: outcome.lastCRC)
    state = outcome.state
    return outcome
  }

  /// Starts the group's SQLite transaction; on failure it is rolled back. Under the write
  /// lock, the trail's end must be where this writer has it: if another connection
  /// committed (the state row moved), or left records past the end (a writer that died
  /// between its MAT sync and its COMMIT, or whose COMMIT failed: durable, so committed,
  /// and perhaps shipped), catch up first rather than write over them.
  private func begin() throws {
    if let retired { throw retired }
    if let reason = behind {
      guard catchUpBehind() else { throw PrimaryError.databaseBehindMAT(database: config.database, reason: reason) }
    }
    try connection.run(cached: "BEGIN IMMEDIATE")
    do {
      // A block set before the lock was taken is seen, so a switchover's last record or a
      // takeover's fence really is last.
      if !bypassWriteBlock, let reason = WriteBlock.reason(layout) {
        throw PrimaryError.writesBlocked(node: layout.root, reason: reason)
      }
      // data_version moves only when another connection commits.
      let version = try connection.cached("PRAGMA data_version")
      let current = try version.step() ? version.column(0) : .null
      version.reset()
      let othersCommitted = current != dataVersion
      if try othersCommitted && CommitState.read(connection) != state || trail.hasRecordsPastEnd() {
        try checkStillPrimary()
        _ = try catchUp()
        try schema.revalidate()
      } else if othersCommitted {
        try schema.revalidate()
      }
      // Only once the new state is taken: a failed check is made again next time.
      dataVersion = current
    } catch {
      try? connection.execute("ROLLBACK")
      throw error
    }
  }

  /// Applies the commits the MAT holds and the database lacks (after a failed COMMIT),
  /// in a transaction of their own. True once the database has them all.
  private func catchUpBehind() -> Bool {
    let wasBehind = loggedBehind
    do {
      try connection.execute("BEGIN IMMEDIATE")
      let outcome = try catchUp()
      try connection.execute("COMMIT")
      behind = nil
      if wasBehind {
        loggedBehind = false
        events.log(
          .primaryDatabaseCaughtUp,
          "\(config.database) took in the commits it lacked, up to \(outcome.trailEnd); writes go on",
          [("position", outcome.trailEnd.json)])
      }
      return true
    } catch {
      try? connection.execute("ROLLBACK")
      behind = "\(error)"
      if !wasBehind {
        loggedBehind = true
        events.log(
          .primaryDatabaseBehind,
          "\(config.database) cannot take transactions already committed in the MAT up to \(trail.end) (\(error)); nothing new is written until it can",
          [("position", trail.end.json)])
      }
      return false
    }
  }

  /// Whether 9043 was logged and 9044 not yet: each transition is logged once.
  private var loggedBehind = false
  private lazy var events = EventLog(layout: layout, node: config.nodeId.description)

  /// Someone else committed: a switchover, a takeover's fence or a recovery may have
  /// made this node something other than the primary this writer was opened for. Its
  /// cached trail and generation then mean nothing, so it stops for good.
  private func checkStillPrimary() throws {
    let now: NodeConfig
    do { now = try layout.loadConfig() } catch { throw retire("its config cannot be read: \(error)") }
    if now.role != .primary {
      throw retire("it is a \(now.role) now" + (now.primary.map { " (its primary is \($0))" } ?? ""))
    }
    if now.generation != config.generation {
      throw retire("its generation moved from \(config.generation) to \(now.generation)")
    }
    if let superseded = now.superseded {
      throw retire("\(superseded.generation.map { "generation \($0)" } ?? "a newer generation") took over from it")
    }
    let held = try CommitState.read(connection)
    if held.nodeID != config.nodeId {
      throw retire("its database follows node \(held.nodeID)'s trail")
    }
  }

  private func retire(_ why: String) -> PrimaryError {
    let error = PrimaryError.noLongerPrimary(node: layout.root, generation: config.generation, reason: why)
    retired = error
    return error
  }

  func commit(_ batch: [WriteRequest]) {
    do {
      try begin()
    } catch {
      for r in batch { r.finish(.failure(error)) }
      return
    }
    var records: [PendingRecord] = []
    var committed: [(WriteRequest, Int?)] = []
    var checksumDelta = ChecksumDelta()
    var txid = state.lastTxid
    // A request alone in its group needs no savepoint: if it fails, the transaction goes.
    let alone = batch.count == 1
    for (index, request) in batch.enumerated() {
      do {
        if !alone { try connection.run(cached: "SAVEPOINT understudy_w") }
        let transaction = Transaction(connection: connection, policy: policy, schema: schema, capture: capture)
        capture.isRecording = true
        defer {
          capture.isRecording = false
          capture.discard()
        }
        do {
          try request.run(transaction)
          // The body may have caught the error that rolled the whole transaction back.
          if connection.isAutocommit { throw PrimaryError.transactionRolledBack }
          let items = try transaction.finish()
          if !alone { try connection.run(cached: "RELEASE understudy_w") }
          checksumDelta.merge(transaction.checksumDelta)
          if items.isEmpty {
            committed.append((request, nil))
          } else {
            txid = txid.next
            records.append(
              PendingRecord(
                type: .commit, txid: txid, commitMicros: Clock.nowMicros(), payload: CommitPayload.encode(items)))
            committed.append((request, records.count - 1))
          }
        } catch {
          schema.invalidate()
          if alone {
            try? connection.execute("ROLLBACK")
            request.finish(.failure(error))
            return
          }
          // A full disk or an I/O error makes SQLite roll the whole transaction back.
          guard !connection.isAutocommit else { throw GroupLost(cause: error) }
          try connection.run(cached: "ROLLBACK TO understudy_w")
          try connection.run(cached: "RELEASE understudy_w")
          request.finish(.failure(error))
        }
      } catch {
        // The savepoint itself failed (SQLite rolled the whole transaction back: a full
        // disk, an I/O error, OR ROLLBACK): nothing of the group is left, and nothing of
        // it is durable. Every request hears so, the ones not run yet too.
        try? connection.execute("ROLLBACK")
        let cause = (error as? GroupLost)?.cause ?? error
        let lost = PrimaryError.groupRolledBack(database: config.database, reason: "\(cause)")
        for (r, _) in committed { r.finish(.failure(lost)) }
        request.finish(.failure(cause))
        for r in batch[(index + 1)...] { r.finish(.failure(lost)) }
        return
      }
    }
    let appended: [AppendedRecord]
    do {
      appended = try trail.append(records)
    } catch {
      try? connection.execute("ROLLBACK")
      for (r, _) in committed { r.finish(.failure(error)) }
      return
    }
    var newState = state!
    if let last = appended.last {
      newState.advance(txid: txid, position: last.position, end: last.end)
    }
    var pending: String?
    do {
      if !records.isEmpty {
        try IncrementalChecksum.apply(checksumDelta, on: connection)
        try newState.save(connection)
      }
      try connection.run(cached: "COMMIT")
      state = newState
    } catch {
      pending = committedButBehind(error)
    }
    for (r, index) in committed {
      r.finish(
        .success(
          index.map {
            CommitInfo(
              txid: records[$0].txid, position: appended[$0].position, end: appended[$0].end, pending: pending)
          }))
    }
  }

  /// The COMMIT after a MAT sync failed. The MAT is the truth: the records are durable
  /// there, so their transactions are committed, whatever the database says. Take them in
  /// at once if it can; otherwise say why, and the next write or open takes them in.
  private func committedButBehind(_ error: Error) -> String? {
    try? connection.execute("ROLLBACK")
    behind = "\(error)"
    return catchUpBehind() ? nil : behind
  }

  /// A request's failure that took the group's whole transaction with it.
  private struct GroupLost: Error { var cause: Error }

  /// One control record in a transaction of its own; it keeps the current txid.
  func appendControl(_ type: RecordType, payload: [UInt8], bypassingWriteBlock: Bool) throws -> CommitInfo {
    bypassWriteBlock = bypassingWriteBlock
    defer { bypassWriteBlock = false }
    try begin()
    let appended: AppendedRecord
    do {
      appended = try trail.append([
        PendingRecord(type: type, txid: state.lastTxid, commitMicros: Clock.nowMicros(), payload: payload)
      ])[0]
    } catch {
      try? connection.execute("ROLLBACK")
      throw error
    }
    var newState = state!
    newState.advance(txid: state.lastTxid, position: appended.position, end: appended.end)
    var pending: String?
    do {
      try newState.save(connection)
      try connection.run(cached: "COMMIT")
      state = newState
    } catch {
      pending = committedButBehind(error)
    }
    return CommitInfo(txid: newState.lastTxid, position: appended.position, end: appended.end, pending: pending)
  }

  func shutdown() {
    connection.setAuthorizer(nil)
  }
}
