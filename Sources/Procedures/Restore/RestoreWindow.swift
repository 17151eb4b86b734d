// What a replica can be rolled back to: the records of its current generation that its
// image trail still holds, from the oldest one kept to what the replica has applied. Each
// record carries its transaction's changesets, so going back is undoing them newest
// first (inverted changesets), never replaying from a base. The window ends at the last
// failover or failback (a new generation starts a new image trail) and at the image
// trail's retention (`--retention`), whichever is later.

import Apply
import AuditTrail
import Foundation
import Node
import SQLiteSupport

/// A point to restore a replica to (`scrt_ra -D`, `-S`, `-t`).
public enum RestoreTarget: Sendable, Equatable, CustomStringConvertible {
  /// Every transaction committed at or before this time (microseconds since 1970 UTC,
  /// the primary's clock) and none after; no record stamped after it (a marker), as the
  /// updater's stop at a time (`Record.isStamped(after:)`).
  case time(Int64)
  /// Every transaction before the newest marker of this name, none after it.
  case marker(String)
  /// As file recovery defines it: every transaction whose commit record starts before
  /// it and none at or after it.
  case position(MATPosition)

  var position: MATPosition? { if case .position(let p) = self { p } else { nil } }

  /// Only a marker needs the whole window read (to find it).
  public var isMarker: Bool { if case .marker = self { true } else { false } }

  public var description: String {
    switch self {
    case .time(let micros): "time \(RestoreTime.text(micros))"
    case .marker(let name): "marker '\(name)'"
    case .position(let p): "MAT position \(p)"
    }
  }
}

/// One marker record the window holds.
public struct RestoreMarker: Codable, Sendable, Equatable {
  public var name: String
  public var position: MATPosition
  public var micros: Int64

  public var json: JSON {
    .object([("name", .string(name)), ("position", position.json), ("time", .string(RestoreTime.text(micros)))])
  }
}

public enum RestoreError: Error, CustomStringConvertible {
  case outside(target: RestoreTarget, why: String, window: RestoreWindow)
  case noSuchMarker(name: String, window: RestoreWindow)
  case clockWentBack(target: RestoreTarget, txid: TransactionID, position: MATPosition, micros: Int64)
  case skipped(txid: TransactionID, position: MATPosition)
  case imageTrail(position: MATPosition, reason: String)
  case notAReplica(node: String, reason: String)
  case snapshotHeld(node: String, path: String, target: String)
  case noSnapshot(node: String)
  case cannotUndo(target: String, reason: UndoError, replica: String)
  case needsConfirmation(target: RestoreTarget)
  case badMarker(name: String, problem: String)

  public var description: String {
    switch self {
    case .outside(let target, let why, let window):
      "cannot restore to \(target): \(why). \(window.validRange)"
    case .noSuchMarker(let name, let window):
      "no marker '\(name)' in the restore window"
        + (window.markers.isEmpty
          ? " (it holds no markers)"
          : " (it holds \(window.markers.suffix(10).map { "'\($0.name)'" }.joined(separator: ", ")))")
        + ". A marker written moments ago may not be applied here yet; markers written before the last failover or failback are gone. \(window.validRange)"
    case .clockWentBack(let target, let txid, let position, let micros):
      "cannot restore to \(target): transaction \(txid) at \(position) committed at \(RestoreTime.text(micros)), after a later one, so no MAT prefix holds exactly the transactions committed by then (the primary's clock went back); restore to a MAT position with -t instead"
    case .skipped(let txid, let position):
      "this replica skipped transaction \(txid) at \(position) (`understudy resolve --skip`), so it holds no MAT prefix to go back from; make it a backup again with `understudy follow --full-copy`"
    case .imageTrail(let position, let reason):
      "the image trail cannot be read back from \(position): \(reason)"
    case .notAReplica(let node, let reason): "node \(node) holds no replica to restore: \(reason)"
    case .snapshotHeld(let node, let path, let target):
      "node \(node) already holds a snapshot (\(path), \(target)); release it with `scrt_ra -W` before taking another"
    case .noSnapshot(let node): "node \(node) holds no snapshot to release"
    case .cannotUndo(let target, let reason, let replica):
      "cannot restore to \(target): \(reason.restoreReason). Nothing was changed and \(replica); choose a later point (`scrt_ra -l` lists them)"
    case .needsConfirmation(let target):
      "-F rolls the replica itself back to \(target) and sets aside everything after it; add -q to confirm (validate the point with a virtual restore first)"
    case .badMarker(let name, let problem): "marker '\(name)': \(problem)"
    }
  }
}

public struct RestoreWindow: Sendable {
  /// Restoring here undoes every record the window holds.
  public var oldest: MATPosition
  /// The replica's applied end: restoring here undoes nothing.
  public var newest: MATPosition
  /// The commit time of the first record in the window: the earliest `-D` that restores
  /// (nil when the window holds no record).
  public var oldestMicros: Int64?
  /// The commit time of the last record the replica applied.
  public var newestMicros: Int64?
  public var markers: [RestoreMarker]
  public var generation: Generation
  /// The image trail's retention, which is the restore window's length.
  public var retentionSeconds: Int
  /// The last transaction the replica holds.
  public var lastTxid: TransactionID

  public var validRange: String {
    let times =
      oldestMicros.map { from in
        " and times \(RestoreTime.text(from)) to \(newestMicros.map(RestoreTime.text) ?? RestoreTime.text(from))"
      } ?? ""
    return
      "The valid range is MAT positions \(oldest) to \(newest)\(times) (`scrt_ra -l`): generation \(generation) since the last failover or failback, as far back as the image trail keeps (--retention \(retentionSeconds) s)"
  }

  public var json: JSON {
    .object([
      (
        "oldest",
        .object([("position", oldest.json), ("time", oldestMicros.map { .string(RestoreTime.text($0)) } ?? .null)])
      ),
      (
        "newest",
        .object([("position", newest.json), ("time", newestMicros.map { .string(RestoreTime.text($0)) } ?? .null)])
      ),
      ("markers", .array(markers.map(\.json))), ("generation", .int(Int64(generation.rawValue))),
      ("retentionSeconds", .int(Int64(retentionSeconds))), ("lastTxid", .int(Int64(lastTxid.rawValue))),
    ])
  }

  /// Refuses a target this window cannot hold, naming the valid range: what a restore
  /// checks before copying anything, and again on the copy.
  public func check(_ target: RestoreTarget, now: Int64 = Clock.nowMicros()) throws {
    switch target {
    case .position(let p):
      guard p >= oldest else {
        throw RestoreError.outside(
          target: target, why: "it lies before the oldest record the window holds", window: self)
      }
      guard p <= newest else {
        throw RestoreError.outside(
          target: target, why: "it lies past what the replica has applied (\(newest))", window: self)
      }
    case .time(let t):
      guard t <= now else { throw RestoreError.outside(target: target, why: "it is in the future", window: self) }
      guard let from = oldestMicros, t >= from else {
        throw RestoreError.outside(
          target: target,
          why: "it lies before the oldest transaction the window holds"
            + (oldestMicros.map { " (committed \(RestoreTime.text($0)))" } ?? " (it holds none)"),
          window: self)
      }
      if let to = newestMicros, t > to {
        throw RestoreError.outside(
          target: target,
          why:
            "the replica holds commits up to \(RestoreTime.text(to)) only, so a later time could include transactions it has not received (`scrt_ra -X` snapshots what it holds now)",
          window: self)
      }
    case .marker(let name):
      guard markers.contains(where: { $0.name == name }) else {
        throw RestoreError.noSuchMarker(name: name, window: self)
      }
    }
  }

  /// The window of the replica at `database` (its own state row says where it stands)
  /// in node `layout`. `withMarkers` reads the whole window to list its markers; without
  /// it only the first record of the oldest file and the replica's last record are read.
  public static func find(_ layout: NodeLayout, database: String, withMarkers: Bool) throws -> RestoreWindow {
    let config = try layout.loadConfig()
    guard config.role == .backup else {
      throw RestoreError.notAReplica(
        node: layout.root, reason: "it is the \(config.role) (a snapshot or restore runs on a recovery server)")
    }
    guard FileManager.default.fileExists(atPath: database) else {
      throw RestoreError.notAReplica(node: layout.root, reason: "its database \(database) does not exist yet")
    }
    let db = try Connection(path: database, mode: .readOnly)
    try db.execute("BEGIN")
    let state = try CommitState.read(db)
    let skipped = try Resolve.skipped(db)
    try db.execute("COMMIT")
    if let first = skipped.first { throw RestoreError.skipped(txid: first.txid, position: first.position) }
    return try find(layout, config: config, state: state, withMarkers: withMarkers)
  }

  static func find(_ layout: NodeLayout, config: NodeConfig, state: CommitState, withMarkers: Bool) throws
    -> RestoreWindow
  {
    let image = layout.image
    var window = RestoreWindow(
      oldest: state.end, newest: state.end, oldestMicros: nil, newestMicros: nil, markers: [],
      generation: config.generation, retentionSeconds: config.retention, lastTxid: state.lastTxid)
    // The files of this generation's stream, back from the one the replica stands in.
    var first: UInt32?
    var sno = state.end.sno
    while sno >= 1, image.fileExists(sno: sno),
      case .success(let header) = FileHeader.decode(try image.headerAndSize(sno: sno).header),
      header.nodeID == state.nodeID, header.generation == config.generation
    {
      first = sno
      sno -= 1
    }
    guard let first else { return window }
    // After an initial copy the oldest file starts with zeros up to the copy's position.
    let handle = try AuditTrail.FileHandle(path: image.filePath(sno: first), flags: O_RDONLY)
    let limit = first == state.end.sno ? Int(state.end.rba) : try handle.size()
    guard let nonZero = try handle.firstNonZero(from: Int(TrailFormat.firstRBA), to: limit) else {
      return window
    }
    window.oldest = MATPosition(sno: first, rba: UInt64(nonZero / TrailFormat.alignment * TrailFormat.alignment))
    if let last = state.last, case .record(let r) = try? TrailReader(directory: image, from: last).next(),
      r.end == state.end
    {
      window.newestMicros = r.record.commitMicros
    }
    let reader = try TrailReader(directory: image, from: window.oldest)
    while case .record(let r) = try reader.next(), r.position < state.end {
      if window.oldestMicros == nil { window.oldestMicros = r.record.commitMicros }
      if r.record.type == .marker, let marker = MarkerPayload(decoding: r.record.payload) {
        window.markers.append(RestoreMarker(name: marker.name, position: r.position, micros: r.record.commitMicros))
      }
      if !withMarkers { break }
    }
    if window.newestMicros == nil { window.newestMicros = window.oldestMicros }
    return window
  }
}

/// A target resolved against a replica standing at `state`: where the restored database
/// ends, what it holds last, and the records it must undo (oldest first).
public struct RestoreCut: Sendable {
  public var position: MATPosition
  public var lastTxid: TransactionID
  /// The start of the last record it holds, and that record's commit time: nil when the
  /// cut is the window's oldest position (the record before it is not kept).
  public var last: MATPosition?
  public var lastMicros: Int64?
  public var records: [PositionedRecord]

  public var undone: Int { records.filter { $0.record.type == .commit }.count }

  /// The state row of the database once `records` are undone.
  func state(from replica: CommitState) -> CommitState {
    CommitState(nodeID: replica.nodeID, lastTxid: lastTxid, last: last, end: position)
  }

  /// Resolves `target` in `window` for the replica at `state`, reading the image trail
  /// from the start of the file the cut lies in (or the window's oldest record) to the
  /// replica's end: what is undone, and at most one file before it.
  public static func resolve(
    _ target: RestoreTarget, in window: RestoreWindow, image: TrailDirectory, state: CommitState,
    now: Int64 = Clock.nowMicros()
  ) throws -> RestoreCut {
    try window.check(target, now: now)
    // Where to start reading and when to cut: a file before the cut's, so that the record
    // before the cut is read even when the cut is a file's first record.
    var start = window.oldest
    func fileBefore(_ sno: UInt32) -> MATPosition {
      max(window.oldest, MATPosition(sno: max(sno, 2) - 1, rba: TrailFormat.firstRBA))
    }
    let cutsAt: (PositionedRecord) -> Bool
    switch target {
    case .position(let p):
      start = fileBefore(p.sno)
      cutsAt = { $0.position >= p }
    case .time(let t):
      // Start in the newest file whose first record is at or before the time.
      var sno = state.end.sno
      while sno > start.sno {
        let fileStart = MATPosition(sno: sno, rba: TrailFormat.firstRBA)
        if case .record(let r) = try TrailReader(directory: image, from: fileStart).next(), r.record.commitMicros <= t {
          start = fileBefore(sno)
          break
        }
        sno -= 1
      }
      cutsAt = { $0.record.isStamped(after: t) }
    case .marker(let name):
      let marker = window.markers.last(where: { $0.name == name })!  // checked above
      start = fileBefore(marker.position.sno)
      cutsAt = { $0.position >= marker.position }
    }

    var cut = RestoreCut(position: state.end, lastTxid: state.lastTxid, last: nil, lastMicros: nil, records: [])
    var cutFound = false
    var lastEnd: MATPosition?
    do {
      let reader = try TrailReader(directory: image, from: start)
      var end = start
      while end < state.end {
        guard case .record(let r) = try reader.next() else {
          throw RestoreError.imageTrail(
            position: end, reason: "no whole record starts here, but the replica has applied up to \(state.end)")
        }
        if !cutFound, cutsAt(r) {
          cutFound = true
          // The end of a file's last record and the next file's first position are one point.
          cut.position = lastEnd.map { $0 == target.position ? $0 : r.position } ?? r.position
        }
        if cutFound {
          cut.records.append(r)
        } else {
          cut.last = r.position
          cut.lastMicros = r.record.commitMicros
          lastEnd = r.end
        }
        end = r.end
      }
      guard end == state.end else {
        throw RestoreError.imageTrail(
          position: end, reason: "a record runs past the replica's end \(state.end)")
      }
    } catch let error as RestoreError {
      throw error
    } catch {
      throw RestoreError.imageTrail(position: start, reason: "\(error)")
    }
    if case .position(let p) = target, cut.position != p {
      throw RestoreError.outside(
        target: target,
        why:
          "it is not where a record starts (the records around it start at \(cut.last.map { "\($0)" } ?? "?") and \(cut.position))",
        window: window)
    }
    if case .time(let t) = target,
      let late = cut.records.first(where: { $0.record.type == .commit && $0.record.commitMicros <= t })
    {
      throw RestoreError.clockWentBack(
        target: target, txid: late.record.txid, position: late.position, micros: late.record.commitMicros)
    }
    if let firstUndone = cut.records.first(where: { $0.record.type == .commit }) {
      cut.lastTxid = TransactionID(firstUndone.record.txid.rawValue - 1)
    }
    return cut
  }
}

/// The times `scrt_ra` reads and prints: `YYYY-MM-DD HH:MM:SS[.ffffff]` or
/// `MM/DD/YY HH:MM:SS`, in local time (the TZ environment variable) unless a zone follows
/// (`Z`, `UTC`, `+HH:MM`, `-HHMM`); and unix seconds, with a fraction if wanted.
public enum RestoreTime {
  public struct SyntaxError: Error, CustomStringConvertible {
    public var text: String
    public var reason: String?
    public var description: String {
      if let reason { return "cannot use the time '\(text)': \(reason); give it with its offset, such as +02:00" }
      return
        "cannot read the time '\(text)': give \"YYYY-MM-DD HH:MM:SS\" or \"MM/DD/YY HH:MM:SS\" (local time; add Z or +HH:MM for another zone, .ffffff for fractions of a second)"
    }
  }

  /// Microseconds since 1970 UTC.
  public static func parse(_ text: String, zone: TimeZone = .current) throws -> Int64 {
    var s = text.trimmingCharacters(in: .whitespaces)
    var tz = zone
    // A zone at the end: Z, UTC, GMT, +HH:MM, +HHMM, +HH.
    if s.hasSuffix("Z") || s.hasSuffix("z") {
      tz = TimeZone(identifier: "UTC")!
      s.removeLast()
    } else if s.uppercased().hasSuffix(" UTC") || s.uppercased().hasSuffix(" GMT") {
      tz = TimeZone(identifier: "UTC")!
      s.removeLast(4)
    } else if let sign = s.lastIndex(where: { $0 == "+" || $0 == "-" }), s[..<sign].contains(":") {
      let offset = s[s.index(after: sign)...].filter { $0 != ":" }
      guard offset.count == 2 || offset.count == 4, offset.allSatisfy(\.isNumber),
        let hours = Int(offset.prefix(2)),
        let minutes = Int(offset.dropFirst(2).isEmpty ? "0" : String(offset.dropFirst(2))),
        let zone = TimeZone(secondsFromGMT: (s[sign] == "-" ? -1 : 1) * (hours * 3600 + minutes * 60))
      else { throw SyntaxError(text: text) }
      tz = zone
      s = String(s[..<sign])
    }
    s = s.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "T", with: " ")
    let halves = s.split(separator: " ", omittingEmptySubsequences: true)
    guard halves.count == 2 else { throw SyntaxError(text: text) }
    var c = DateComponents()
    let date = halves[0]
    if date.contains("-") {
      let p = date.split(separator: "-").map { Int($0) }
      guard p.count == 3, let y = p[0], let m = p[1], let d = p[2], date.split(separator: "-")[0].count == 4 else {
        throw SyntaxError(text: text)
      }
      (c.year, c.month, c.day) = (y, m, d)
    } else {
      let p = date.split(separator: "/").map { Int($0) }
      guard p.count == 3, let m = p[0], let d = p[1], let y = p[2] else { throw SyntaxError(text: text) }
      (c.year, c.month, c.day) = (y < 100 ? 2000 + y : y, m, d)
    }
    let clock = halves[1].split(separator: ":")
    guard clock.count == 3, let h = Int(clock[0]), let mi = Int(clock[1]) else { throw SyntaxError(text: text) }
    let secondParts = clock[2].split(separator: ".", omittingEmptySubsequences: false)
    guard let sec = Int(secondParts[0]), secondParts.count <= 2 else { throw SyntaxError(text: text) }
    guard let micros = secondParts.count == 2 ? fraction(secondParts[1]) : 0 else { throw SyntaxError(text: text) }
    (c.hour, c.minute, c.second) = (h, mi, sec)
    var calendar = Calendar(identifier: .gregorian)
    calendar.timeZone = tz
    guard (1...12).contains(c.month!), (1...31).contains(c.day!), (0...23).contains(h), (0...59).contains(mi),
      (0...59).contains(sec), let when = calendar.date(from: c), calendar.component(.day, from: when) == c.day
    else { throw SyntaxError(text: text) }
    // A wall-clock time a DST change skipped, or one it repeats, is no single instant.
    func wall(_ d: Date) -> [Int] { [.hour, .minute].map { calendar.component($0, from: d) } }
    guard wall(when) == [h, mi] else {
      throw SyntaxError(
        text: text, reason: "that local time does not exist in \(tz.identifier) (a DST change skips it)")
    }
    if wall(when.addingTimeInterval(3600)) == [h, mi] || wall(when.addingTimeInterval(-3600)) == [h, mi] {
      throw SyntaxError(
        text: text, reason: "that local time occurs twice in \(tz.identifier) (a DST change repeats it)")
    }
    return Int64(when.timeIntervalSince1970.rounded()) * 1_000_000 + micros
  }

  /// The microseconds of a decimal fraction of a second, one to six digits.
  static func fraction(_ digits: Substring) -> Int64? {
    guard !digits.isEmpty, digits.count <= 6, digits.allSatisfy(\.isNumber), let f = Int64(digits) else { return nil }
    return f * Int64(pow(10, Double(6 - digits.count)))
  }

  /// Unix seconds, with up to six decimals.
  public static func parse(unixSeconds text: String) -> Int64? {
    let parts = text.split(separator: ".", omittingEmptySubsequences: false)
    guard (1...2).contains(parts.count), !parts[0].isEmpty, parts[0].allSatisfy(\.isNumber), let whole = Int64(parts[0])
    else { return nil }
    guard let micros = parts.count == 2 ? fraction(parts[1]) : 0 else { return nil }
    // Digits past year 292277 do not fit in microseconds: not a time, rather than a crash.
    let (scaled, overflow) = whole.multipliedReportingOverflow(by: 1_000_000)
    return overflow ? nil : scaled + micros
  }

  /// `2026-12-02 04:46:24.123456Z`: UTC, to the microsecond, so that it parses back exactly.
  public static func text(_ micros: Int64) -> String {
    let seconds = micros >= 0 ? micros / 1_000_000 : (micros - 999_999) / 1_000_000
    let fraction = micros - seconds * 1_000_000
    var calendar = Calendar(identifier: .gregorian)
    calendar.timeZone = TimeZone(identifier: "UTC")!
    let c = calendar.dateComponents(
      [.year, .month, .day, .hour, .minute, .second], from: Date(timeIntervalSince1970: Double(seconds)))
    func two(_ v: Int?) -> String { String(format: "%02d", v ?? 0) }
    return String(format: "%04d", c.year ?? 0) + "-" + two(c.month) + "-" + two(c.day) + " " + two(c.hour) + ":"
      + two(c.minute) + ":" + two(c.second) + "." + String(format: "%06lld", fraction) + "Z"
  }
}
