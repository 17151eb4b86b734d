// The operator's stop point for the backup's updater (RDF's `STOP UPDATE, TIMESTAMP`):
// `NODE/state/updater-stop.json`, written by `understudy updater stop` and removed by
// `updater start`. The updater looks at it before every batch and ends a batch before
// the first record past the point, so the database holds exactly the MAT prefix up to
// it; the receiver goes on filling the image trail. Because a batch already running when
// the file is written may pass the point, the command waits for the updater to
// acknowledge the stop's id (through the runtime file) and then checks the database.
// Takeover's drain does not look at it: a takeover applies everything it received.

import Apply
import AuditTrail
import Foundation
import Node

/// Where the updater stops: its id, the point, and what it was set against.
public struct UpdaterStop: Codable, Sendable, Equatable {
  public enum Point: Sendable, Equatable, CustomStringConvertible {
    /// Every transaction committed at or before this time (microseconds since 1970,
    /// the primary's clock) applied, no record stamped after it.
    case time(Int64)
    /// Every record before the next marker of this name applied, nothing from it on.
    case marker(String)

    public var description: String {
      switch self {
      case .time(let micros): "time \(isoTime(micros: micros))"
      case .marker(let name): "marker '\(name)'"
      }
    }

    public var json: JSON {
      switch self {
      case .time(let micros): .object([("time", .string(isoTime(micros: micros))), ("micros", .int(micros))])
      case .marker(let name): .object([("marker", .string(name))])
      }
    }
  }

  /// Names this request: the updater acknowledges it by this id.
  public var id: String
  public var point: Point
  /// A stop belongs to the generation it was set in; a later role change makes it obsolete.
  public var generation: Generation
  /// The replica's applied end when the stop was set: a marker stop means the next
  /// marker of that name from here.
  public var from: MATPosition
  public var setMicros: Int64

  public init(point: Point, generation: Generation, from: MATPosition) {
    self.id = UUID().uuidString.lowercased()
    self.point = point
    self.generation = generation
    self.from = from
    self.setMicros = Clock.nowMicros()
  }

  /// Whether the updater must not apply `record`: it is the first one past the point.
  /// A time stop halts at any record stamped after it (a marker too), so the last
  /// applied record's stamp alone says whether the point has been passed.
  public func halts(before record: PositionedRecord) -> Bool {
    switch point {
    case .time(let micros): record.record.isStamped(after: micros)
    case .marker(let name):
      record.record.type == .marker && MarkerPayload(decoding: record.record.payload)?.name == name
    }
  }

  public static func path(_ layout: NodeLayout) -> String { layout.state + "/updater-stop.json" }

  public static func read(_ layout: NodeLayout) throws -> UpdaterStop? {
    try StateFile.read(UpdaterStop.self, at: path(layout))
  }

  func write(_ layout: NodeLayout) throws { try StateFile.write(self, to: Self.path(layout)) }

  /// Removes the stop file durably; false when there was none.
  @discardableResult
  static func remove(_ layout: NodeLayout) throws -> Bool {
    let path = path(layout)
    guard unlink(path) == 0 else {
      if errno == ENOENT { return false }
      throw StateFileError(path: path, reason: "cannot remove it: \(String(cString: strerror(errno)))")
    }
    try DurableFile.syncDirectory(layout.state)
    return true
  }

  // A flat file: `{"id", "generation", "from", "setMicros", "micros"+"time" | "marker"}`.
  enum CodingKeys: String, CodingKey { case id, generation, from, setMicros, micros, time, marker }

  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    id = try c.decode(String.self, forKey: .id)
    generation = Generation(try c.decode(UInt64.self, forKey: .generation))
    from = try c.decode(MATPosition.self, forKey: .from)
    setMicros = try c.decode(Int64.self, forKey: .setMicros)
    let micros = try c.decodeIfPresent(Int64.self, forKey: .micros)
    let marker = try c.decodeIfPresent(String.self, forKey: .marker)
    switch (micros, marker) {
    case (let micros?, nil): point = .time(micros)
    case (nil, let name?) where MarkerPayload.problem(with: name) == nil: point = .marker(name)
    default:
      throw DecodingError.dataCorrupted(
        .init(codingPath: [], debugDescription: "it must hold exactly one of 'micros' and a valid 'marker'"))
    }
  }

  public func encode(to encoder: Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(id, forKey: .id)
    try c.encode(generation.rawValue, forKey: .generation)
    try c.encode(from, forKey: .from)
    try c.encode(setMicros, forKey: .setMicros)
    switch point {
    case .time(let micros):
      try c.encode(micros, forKey: .micros)
      try c.encode(isoTime(micros: micros), forKey: .time)
    case .marker(let name): try c.encode(name, forKey: .marker)
    }
  }
}

/// The updater's view of the stop file: read again only when the file changed (one
/// stat per batch), acknowledged in `BackupProgress`, and reported once when reached.
final class UpdaterStopWatch {
  let layout: NodeLayout
  let events: EventLog
  let progress: BackupProgress
  private var seen: [Int]?
  private var current: UpdaterStop?
  private var problem: String?
  /// The id of the stop reached in this run, while it holds.
  private var reached: String?

  init(layout: NodeLayout, events: EventLog, progress: BackupProgress) {
    self.layout = layout
    self.events = events
    self.progress = progress
  }

  enum Decision {
    /// Apply, honouring this stop if any.
    case apply(UpdaterStop?)
    /// Apply nothing now: stopped at the point, or the stop file cannot be read.
    case hold
  }

  /// Before each batch: one stat, and a read only when the file changed.
  func decide() -> Decision {
    refresh()
    if problem != nil { return .hold }
    if let current, reached == current.id { return .hold }
    return .apply(current)
  }

  /// The batch that just committed ended before `record`, the first record past `stop`.
  func reach(_ stop: UpdaterStop, appliedTo state: CommitState, before record: PositionedRecord) {
    guard reached != stop.id else { return }
    reached = stop.id
    let message =
      "updater stopped at the stop point (\(stop.point)): applied up to \(state.end) (transaction \(state.lastTxid)); the next record, at \(record.position), is past it. The receiver goes on; `understudy updater start --node \(layout.root)` resumes"
    progress.update {
      $0.updaterStopped = message
      $0.updaterStopReached = true
    }
    // Before the first transaction there is no txid to name.
    let txid: [(String, JSON)] = state.lastTxid.rawValue > 0 ? [("txid", .int(Int64(state.lastTxid.rawValue)))] : []
    events.log(.updaterStopReached, message, [("position", state.end.json)] + txid + [("id", .string(stop.id))])
  }

  private func refresh() {
    let path = UpdaterStop.path(layout)
    var info = stat()
    let key: [Int]? =
      stat(path, &info) == 0
      ? [Int(info.st_ino), Int(info.st_size), info.st_mtim.tv_sec, info.st_mtim.tv_nsec] : nil
    guard key != seen else { return }
    seen = key
    let before = current
    var stop: UpdaterStop?
    do {
      stop = try UpdaterStop.read(layout)
      if let s = stop, s.generation != (try layout.loadConfig()).generation {
        events.log(
          .updaterStopRemoved,
          "the stop point in \(path) (\(s.point)) was set in generation \(s.generation), before the last role change: ignored; remove it with `understudy updater start`"
        )
        stop = nil
      }
      if problem != nil {
        problem = nil
        progress.update { $0.updaterStopped = nil }
      }
    } catch {
      // An operator asked for a stop we cannot read: applying on would guess.
      let message = "updater holds: \(error)"
      if problem == nil { events.log(.updaterStopUnreadable, message) }
      problem = message
      current = nil
      progress.update {
        $0.updaterStopped = message
        $0.updaterStopID = nil
        $0.updaterStopReached = false
      }
      return
    }
    guard stop != before else { return }
    current = stop
    let wasReached = reached != nil
    reached = nil
    progress.update {
      $0.updaterStopID = stop?.id
      $0.updaterStopReached = false
      if wasReached { $0.updaterStopped = nil }
    }
    if let stop {
      events.log(
        .updaterStopSet, "updater stop point set: \(stop.point); it applies up to there and holds",
        [("id", .string(stop.id))])
    } else if before != nil {
      events.log(.updaterStopRemoved, "updater stop point removed (\(before!.point)); the updater applies on")
    }
  }
}

public enum UpdaterStopError: Error, CustomStringConvertible {
  case passed(point: UpdaterStop.Point, applied: MATPosition, txid: TransactionID, micros: Int64?, removed: Bool)
  case noDatabase(node: String, database: String)
  case unknownTime(node: String, position: MATPosition, reason: String)
  case notAcknowledged(node: String, seconds: Double, updater: String?)

  public var description: String {
    switch self {
    case .passed(let point, let applied, let txid, let micros, let removed):
      (removed
        ? "the stop point \(point) was passed while it was being set: the updater had already applied past it"
        : "the stop point \(point) is already passed")
        + ": the replica has applied up to \(applied) (transaction \(txid)"
        + (micros.map { ", committed \(isoTime(micros: $0))" } ?? "") + ")"
        + (removed ? "; the stop is removed and the updater applies on" : "; nothing was changed")
        + ". To go back to it, roll the replica back with `scrt_ra -F` (failover restore)"
    case .noDatabase(let node, let database):
      "node \(node) has no backup database yet (\(database)): the initial copy has not finished"
    case .unknownTime(let node, let position, let reason):
      "cannot tell when the last transaction the backup \(node) applied (at \(position)) committed: \(reason)"
    case .notAcknowledged(let node, let seconds, let updater):
      "the stop point is written, but the updater of node \(node) did not acknowledge it within \(Int(seconds)) s"
        + (updater.map { " (it reports: \($0))" } ?? "")
        + ", so this command cannot tell whether a batch passed it. The stop stays in place; run `understudy updater stop` again to check, or `understudy updater start` to remove it"
    }
  }
}

/// What `updater stop` and `updater start` do on a backup node.
public enum UpdaterStopControl {
  public struct Applied: Sendable {
    public var state: CommitState
    /// The stamp of the last record applied (nil before the first, and for a marker stop).
    public var micros: Int64?
  }

  public struct StopOutcome: Sendable {
    public var stop: UpdaterStop
    public var applied: Applied
    public var daemonRunning: Bool
    /// The running updater acknowledged it (always false without a daemon).
    public var acknowledged: Bool
    /// The running updater already stands at the point.
    public var reached: Bool
  }

  public struct StartOutcome: Sendable {
    /// A stop file was there and is gone.
    public var removed: Bool
    /// What it held, when it could be read.
    public var stop: UpdaterStop?
    public var daemonRunning: Bool
    public var acknowledged: Bool
  }

  /// The part of the daemon's runtime file these commands read.
  struct Runtime: Decodable {
    var updaterStopID: String?
    var updaterStopReached: Bool?
    var updaterStopped: String?
  }

  static func backupLayout(_ node: String, command: String) throws -> (NodeLayout, NodeConfig) {
    let layout = NodeLayout(root: node)
    let config = try layout.loadConfig()
    guard config.role == .backup else {
      throw NodeError.wrongRole(node: node, role: config.role, needed: .backup, command: command)
    }
    return (layout, config)
  }

  /// Where the replica stands and the stamp of its last record (from the image trail).
  static func applied(_ layout: NodeLayout, database: String, stampNeeded: Bool) throws -> Applied {
    guard FileManager.default.fileExists(atPath: database) else {
      throw UpdaterStopError.noDatabase(node: layout.root, database: database)
    }
    let state = try CommitState.read(databaseAt: database)
    guard stampNeeded, let last = state.last else { return Applied(state: state, micros: nil) }
    do {
      guard case .record(let r) = try TrailReader(directory: layout.image, from: last).next(), r.end == state.end else {
        throw UpdaterStopError.unknownTime(
          node: layout.root, position: last, reason: "the image trail holds no record ending at \(state.end) there")
      }
      return Applied(state: state, micros: r.record.commitMicros)
    } catch let error as UpdaterStopError {
      throw error
    } catch {
      throw UpdaterStopError.unknownTime(node: layout.root, position: last, reason: "\(error)")
    }
  }

  /// Whether a replica at `applied` has gone past `stop`: for a time, its last record is
  /// stamped after it; for a marker, it applied one of that name since the stop was set.
  static func passed(_ stop: UpdaterStop, _ applied: Applied, image: TrailDirectory) throws -> Bool {
    switch stop.point {
    case .time(let micros): return (applied.micros ?? .min) > micros
    case .marker:
      guard applied.state.end > stop.from else { return false }
      let reader = try TrailReader(directory: image, from: stop.from)
      while case .record(let r) = try reader.next(), r.position < applied.state.end {
        if stop.halts(before: r) { return true }
      }
      return false
    }
  }

  static func runtime(_ layout: NodeLayout) throws -> Runtime? {
    try StateFile.read(Runtime.self, at: BackupProgress.runtimePath(layout))
  }

  /// Sets the stop point; with a daemon running, returns once its updater honours it
  /// and the database is checked to be at or before it.
  public static func stop(node: String, at point: UpdaterStop.Point, timeout: Double = 10) throws -> StopOutcome {
    let (layout, config) = try backupLayout(node, command: "updater stop")
    let stampNeeded = if case .time = point { true } else { false }
    let before = try applied(layout, database: config.database, stampNeeded: stampNeeded)
    let stop = UpdaterStop(point: point, generation: config.generation, from: before.state.end)
    if try passed(stop, before, image: layout.image) {
      throw UpdaterStopError.passed(
        point: point, applied: before.state.end, txid: before.state.lastTxid, micros: before.micros, removed: false)
    }
    try stop.write(layout)
    var acknowledged = false
    var runtime: Runtime?
    let deadline = Clock.monotonicSeconds() + timeout
    while DaemonLock.isHeld(layout) {
      runtime = try self.runtime(layout)
      if runtime?.updaterStopID == stop.id {
        acknowledged = true
        break
      }
      guard Clock.monotonicSeconds() < deadline else { break }
      usleep(50_000)
    }
    let running = DaemonLock.isHeld(layout)
    // Any batch after the acknowledgement honours the stop; one before it may have
    // passed the point, and has committed by now.
    let after = try applied(layout, database: config.database, stampNeeded: stampNeeded)
    if try passed(stop, after, image: layout.image) {
      if try UpdaterStop.read(layout)?.id == stop.id { try UpdaterStop.remove(layout) }
      throw UpdaterStopError.passed(
        point: point, applied: after.state.end, txid: after.state.lastTxid, micros: after.micros, removed: true)
    }
    if running && !acknowledged {
      throw UpdaterStopError.notAcknowledged(node: node, seconds: timeout, updater: runtime?.updaterStopped)
    }
    return StopOutcome(
      stop: stop, applied: after, daemonRunning: running, acknowledged: acknowledged,
      reached: acknowledged && runtime?.updaterStopReached == true)
  }

  /// Removes the stop point; with a daemon running, waits (bounded) until its updater
  /// no longer honours it.
  public static func start(node: String, timeout: Double = 10) throws -> StartOutcome {
    let (layout, _) = try backupLayout(node, command: "updater start")
    // A stop file that cannot be read is still removed: that is what the operator asks.
    let existing = try? UpdaterStop.read(layout)
    let removed = try UpdaterStop.remove(layout)
    var acknowledged = false
    let deadline = Clock.monotonicSeconds() + timeout
    while DaemonLock.isHeld(layout) {
      if let runtime = try self.runtime(layout), runtime.updaterStopID == nil {
        acknowledged = true
        break
      }
      guard Clock.monotonicSeconds() < deadline else { break }
      usleep(50_000)
    }
    return StartOutcome(
      removed: removed, stop: removed ? existing ?? nil : nil, daemonRunning: DaemonLock.isHeld(layout),
      acknowledged: acknowledged)
  }
}
