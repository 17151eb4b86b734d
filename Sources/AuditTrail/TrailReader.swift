// Reads a trail from any position, following it across files as it grows.
// A bad record is a torn tail only if nothing valid follows it; anything else is
// corruption, reported with the file and rba.

import Foundation

/// The directory that holds one trail's files.
public struct TrailDirectory: Sendable {
  public let path: String

  public init(path: String) { self.path = path }

  public func filePath(sno: UInt32) -> String { path + "/" + TrailFormat.fileName(sno: sno) }

  public func fileExists(sno: UInt32) -> Bool { DurableFile.exists(filePath(sno: sno)) }

  /// Whether anything was written at `position` of the open `file` (the first bytes of a
  /// record header are not zero) or in a later file: read from disk, never a cache.
  func somethingWritten(at position: MATPosition, in file: FileHandle, size: Int) throws -> Bool {
    let rba = Int(position.rba)
    if rba + 8 <= size, try file.read(count: 8, at: rba).contains(where: { $0 != 0 }) { return true }
    return fileExists(sno: position.sno + 1)
  }

  /// Whether any trail file with a higher sequence number exists (a hole counts).
  public func hasFile(after sno: UInt32) throws -> Bool {
    try fileExists(sno: sno + 1) || snos().contains { $0 > sno }
  }

  /// The sequence numbers of the trail files present, ascending.
  public func snos() throws -> [UInt32] {
    do {
      return try FileManager.default.contentsOfDirectory(atPath: path).compactMap(TrailFormat.sno(fileName:)).sorted()
    } catch {
      throw TrailError.io(operation: "list", path: path, errno: ENOENT)
    }
  }

  /// Opens a trail file and checks its header.
  func open(sno: UInt32) throws -> TrailFile {
    let path = filePath(sno: sno)
    let handle = try FileHandle(path: path, flags: O_RDONLY)
    let size = try handle.size()
    let bytes = try handle.read(count: TrailFormat.fileHeaderSize, at: 0)
    switch FileHeader.decode(bytes) {
    case .failure(let problem):
      throw TrailError.badFile(file: path, reason: problem.description)
    case .success(let header):
      guard header.sno == sno else {
        throw TrailError.badFile(file: path, reason: "header says sequence number \(header.sno), the name says \(sno)")
      }
      return TrailFile(handle: handle, header: header, size: size)
    }
  }
}

struct TrailFile {
  let handle: FileHandle
  let header: FileHeader
  let size: Int
  var path: String { handle.path }
}

/// One record read from a trail, with where it lies.
public struct PositionedRecord: Sendable {
  public var record: Record
  public var position: MATPosition
  public var end: MATPosition
  public var crc: UInt32
  public var generation: Generation
}

/// Reads records in order from a position, across files.
public final class TrailReader {
  public enum Step {
    case record(PositionedRecord)
    /// No more records for now; the next one, when written, starts here.
    case end(MATPosition)
    /// The last record is incomplete or fails its checksum and nothing valid follows it.
    case tornTail(MATPosition, reason: String)
  }

  public let directory: TrailDirectory
  public private(set) var position: MATPosition
  /// The CRC the next record must name as its predecessor, once known.
  public private(set) var lastCRC: UInt32?
  private var file: TrailFile
  /// The directory's modification time when it was last listed and had no hole: a
  /// reader at the end polls often, and listing the directory each time was most of a
  /// tailing extractor's CPU. Files are created by rename, which changes it.
  private var listedUnchangedSince: timespec?
  /// Bytes read ahead from the current file: records are read from here, a syscall per
  /// window rather than two per record. Only a record that checks out is taken from it;
  /// anything else is read again from the file before it is believed, since the window
  /// may predate a write in progress.
  private var window: (sno: UInt32, start: Int, bytes: [UInt8])?
  /// Nothing at or past this position is read ahead or kept in the window. A writer
  /// undoes a batch whose append failed and writes other records at its positions, so
  /// bytes past what is committed may still change; a window holding them would hand
  /// out a record the trail no longer has. Nil: read ahead freely (a trail at rest).
  public var readAheadLimit: MATPosition?
  /// The window was read during the current step: its bytes are as fresh as a new read.
  private var windowIsFresh = false
  static let windowSize = 16 << 10
  /// The node whose trail this is, taken from the first file opened.
  public var nodeID: NodeID { file.header.nodeID }
  public var generation: Generation { file.header.generation }

  public init(directory: TrailDirectory, from position: MATPosition) throws {
    self.directory = directory
    guard directory.fileExists(sno: position.sno) else {
      if let first = try? directory.snos().first, position.sno < first {
        throw TrailError.notARecordBoundary(
          position,
          reason:
            "the trail now starts at \(MATPosition(sno: first, rba: TrailFormat.firstRBA)): older files were removed once nothing needed them (event 9041)"
        )
      }
      throw TrailError.notARecordBoundary(
        position, reason: "there is no trail file \(directory.filePath(sno: position.sno))")
    }
    let file = try directory.open(sno: position.sno)
    guard position.rba >= TrailFormat.firstRBA, position.rba % UInt64(TrailFormat.alignment) == 0,
      position.rba <= UInt64(file.size)
    else {
      throw TrailError.notARecordBoundary(
        position, reason: "records start at 8-byte boundaries from \(TrailFormat.firstRBA) to \(file.size)")
    }
    self.file = file
    self.position = position
    self.lastCRC = position.rba == TrailFormat.firstRBA ? file.header.chainSeed : nil
  }

  /// The next step. Throws `TrailError.corrupt` for damage that is not a torn tail.
  public func next() throws -> Step {
    do {
      return try read(final: false)
    } catch is WriteInProgress {
      return try read(final: true)
    }
  }

  /// A bad record with something valid after it, seen for the first time: a reader
  /// following a trail as it is written can read a record before all its bytes are
  /// there and find the records after it complete by the time it looks. Writes land in
  /// order, so the second read of it is final.
  private struct WriteInProgress: Error {}

  private func read(final: Bool) throws -> Step {
    windowIsFresh = false
    while true {
      let rba = Int(position.rba)
      if rba + TrailFormat.recordHeaderSize > file.size {
        if try advanceIfNextFileExists() { continue }
        // A file cut short inside a record header: torn if any of those bytes were written.
        if rba < file.size, try file.handle.read(count: file.size - rba, at: rba).contains(where: { $0 != 0 }) {
          return try badRecord("record header is incomplete (the file ends at \(file.size))", final: final)
        }
        return .end(position)
      }
      let (header, headerCached) = try bytes(count: TrailFormat.recordHeaderSize, at: rba)
      guard let length = Record.claimedPayloadLength(header: header) else {
        if headerCached {
          window = nil
          continue
        }
        if try advanceIfNextFileExists() { continue }
        return .end(position)
      }
      let size = TrailFormat.recordSize(payloadCount: length)
      guard length <= TrailFormat.maxPayload, rba + size <= file.size else {
        return try badRecord(
          length > TrailFormat.maxPayload
            ? "record length \(length) is over the limit of \(TrailFormat.maxPayload)"
            : "record length \(length) runs past the end of the file (\(file.size) bytes)",
          final: final)
      }
      let (bytes, cached) = try self.bytes(count: size, at: rba)
      let decoded = Record.decode(bytes)
      if cached, case .failure = decoded {
        window = nil
        continue
      }
      switch decoded {
      case .failure(.unknownType(let type)):
        // Intact but not ours to read: never cut it as if it were torn.
        throw TrailError.corrupt(
          file: file.path, position: position,
          reason: "record type \(type) is unknown to this version (written by a newer Understudy?)")
      case .failure(let problem):
        return try badRecord(problem.description, final: final)
      case .success(let (record, crc)):
        if let expected = lastCRC, record.prevCRC != expected {
          throw TrailError.corrupt(
            file: file.path, position: position,
            reason:
              "chain broken: the record names \(hex(record.prevCRC)) as its predecessor's checksum, but the record before it has \(hex(expected)) (a record was lost, reordered or replaced)"
          )
        }
        let start = position
        position.rba += UInt64(size)
        lastCRC = crc
        return .record(
          PositionedRecord(record: record, position: start, end: position, crc: crc, generation: file.header.generation)
        )
      }
    }
  }

  /// `count` bytes of the current file at `rba`, and whether they may be stale: they came
  /// from a window read before this step.
  private func bytes(count: Int, at rba: Int) throws -> (bytes: [UInt8], cached: Bool) {
    if let w = window, w.sno == position.sno, rba >= w.start, rba + count <= w.start + w.bytes.count {
      return (Array(w.bytes[(rba - w.start)..<(rba - w.start + count)]), !windowIsFresh)
    }
    let ahead = min(Self.windowSize, file.size - rba, stableBytes(from: rba))
    guard ahead >= count else {
      window = nil
      return (try file.handle.read(count: count, at: rba), false)
    }
    let read = try file.handle.read(count: ahead, at: rba)
    window = (position.sno, rba, read)
    windowIsFresh = true
    return (Array(read.prefix(count)), false)
  }

  /// How many bytes from `rba` of the current file lie before `readAheadLimit`.
  private func stableBytes(from rba: Int) -> Int {
    guard let limit = readAheadLimit, limit.sno <= position.sno else { return Int.max }
    return limit.sno < position.sno ? 0 : max(0, Int(limit.rba) - rba)
  }

  /// Reads every remaining record; stops at the end or a torn tail.
  /// Whether anything lies at the position, read from the file (not the window): a
  /// record header's first bytes, or a later file. Moves nothing.
  public func somethingFollows() throws -> Bool {
    try directory.somethingWritten(at: position, in: file.handle, size: file.size)
  }

  public func readAll() throws -> (records: [PositionedRecord], stop: Step) {
    var records: [PositionedRecord] = []
    while true {
      let step = try next()
      if case .record(let r) = step { records.append(r) } else { return (records, step) }
    }
  }

  // MARK: - Moving between files

  /// At the end of the current file's data: move to the next file if the writer has
  /// rolled over. The next file is created only after this one is complete and synced,
  /// so a header still zero once the next file exists really is the end of this file.
  private func advanceIfNextFileExists() throws -> Bool {
    let nextSno = position.sno + 1
    guard directory.fileExists(sno: nextSno) else {
      var status = stat()
      let statted = stat(directory.path, &status) == 0
      if statted, let seen = listedUnchangedSince, seen.tv_sec == status.st_mtim.tv_sec,
        seen.tv_nsec == status.st_mtim.tv_nsec
      {
        return false
      }
      if let later = try directory.snos().first(where: { $0 > nextSno }) {
        throw TrailError.badFile(
          file: directory.filePath(sno: nextSno),
          reason: "missing, but \(TrailFormat.fileName(sno: later)) exists: the trail has a hole")
      }
      listedUnchangedSince = statted ? status.st_mtim : nil
      return false
    }
    let rba = Int(position.rba)
    if rba + TrailFormat.recordHeaderSize <= file.size {
      let header = try file.handle.read(count: TrailFormat.recordHeaderSize, at: rba)
      if Record.claimedPayloadLength(header: header) != nil { return false }  // a record arrived meanwhile
    }
    if let i = try file.handle.firstNonZero(from: rba, to: file.size) {
      throw TrailError.corrupt(
        file: file.path, position: MATPosition(sno: position.sno, rba: UInt64(i / 8 * 8)),
        reason: "non-zero bytes after the last record of a closed trail file")
    }
    let next = try directory.open(sno: nextSno)
    guard next.header.nodeID == file.header.nodeID else {
      throw TrailError.badFile(
        file: next.path, reason: "written by node \(next.header.nodeID), the trail belongs to \(file.header.nodeID)")
    }
    guard next.header.generation >= file.header.generation else {
      throw TrailError.badFile(
        file: next.path,
        reason: "generation \(next.header.generation) is older than \(file.header.generation) in the file before it")
    }
    if let expected = lastCRC, next.header.chainSeed != expected {
      throw TrailError.corrupt(
        file: next.path, position: MATPosition(sno: nextSno, rba: 0),
        reason:
          "chain broken at the file boundary: the header names \(hex(next.header.chainSeed)), the last record of \(TrailFormat.fileName(sno: position.sno)) has \(hex(expected))"
      )
    }
    lastCRC = next.header.chainSeed
    file = next
    position = MATPosition(sno: nextSno, rba: TrailFormat.firstRBA)
    return true
  }

  // MARK: - Torn tail or corruption

  /// A torn tail if nothing valid follows; else, on the `final` read, corruption.
  private func badRecord(_ reason: String, final: Bool) throws -> Step {
    if try directory.hasFile(after: position.sno) {
      guard final else { throw WriteInProgress() }
      throw TrailError.corrupt(file: file.path, position: position, reason: reason)
    }
    if let valid = try TrailTail.firstValidRecord(in: file, after: position.rba) {
      guard final else { throw WriteInProgress() }
      throw TrailError.corrupt(
        file: file.path, position: position,
        reason: "\(reason); a valid record follows at \(MATPosition(sno: position.sno, rba: valid))")
    }
    return .tornTail(position, reason: reason)
  }
}

/// What lies after the end of a trail, and how recovery cuts a torn tail.
public enum TrailTail {
  /// The rba of the first record after `rba` in the file that checks out on its own.
  static func firstValidRecord(in file: TrailFile, after rba: UInt64) throws -> UInt64? {
    let start = Int(rba) + TrailFormat.alignment
    guard start + TrailFormat.recordHeaderSize <= file.size else { return nil }
    let rest = try file.handle.read(count: file.size - start, at: start)
    var o = 0
    while o + TrailFormat.recordHeaderSize <= rest.count {
      defer { o += TrailFormat.alignment }
      // Cheap filters first: a known type and zero reserved bytes.
      guard RecordType(rawValue: rest[o + 12]) != nil, rest[o + 13] == 0, rest[o + 14] == 0, rest[o + 15] == 0
      else { continue }
      let length = Int(rest.readLE(UInt32.self, at: o))
      let size = TrailFormat.recordSize(payloadCount: length)
      guard length <= TrailFormat.maxPayload, o + size <= rest.count else { continue }
      if case .success = Record.decode(Array(rest[o..<(o + size)])) { return UInt64(start + o) }
    }
    return nil
  }

  /// Makes `position` the clean end of the trail: keeps any bytes after it in a
  /// `.broken` file beside the trail, then zeroes them and syncs. Refuses if a valid
  /// record lies after it (that would be corruption, not a torn tail).
  public static func cut(directory: TrailDirectory, at position: MATPosition) throws -> Int {
    guard try !directory.hasFile(after: position.sno) else {
      throw TrailError.corrupt(
        file: directory.filePath(sno: position.sno), position: position,
        reason: "cannot cut the trail here: a later trail file exists")
    }
    let file = try directory.open(sno: position.sno)
    let start = Int(position.rba)
    guard try file.handle.firstNonZero(from: start, to: file.size) != nil else { return 0 }
    let rest = try file.handle.read(count: file.size - start, at: start)
    let last = rest.lastIndex(where: { $0 != 0 })!
    if let valid = try firstValidRecord(in: file, after: position.rba - UInt64(TrailFormat.alignment)) {
      throw TrailError.corrupt(
        file: file.path, position: position,
        reason: "cannot cut the trail here: a valid record follows at \(MATPosition(sno: position.sno, rba: valid))")
    }
    let damaged = Array(rest[0...last])
    var kept = "\(file.path).broken-\(position.rba)"
    var n = 1
    while DurableFile.exists(kept) {  // an earlier cut at the same place keeps its bytes
      n += 1
      kept = "\(file.path).broken-\(position.rba).\(n)"
    }
    try DurableFile.create(path: kept, contents: damaged)
    let writable = try FileHandle(path: file.path, flags: O_WRONLY)
    try writable.write([UInt8](repeating: 0, count: damaged.count), at: start)
    try writable.syncData()
    return damaged.count
  }
}

/// Reads a whole trail from its first file and checks everything, the unused space
/// after its end included. What recovery would find, without changing anything.
public struct TrailVerification: Sendable {
  public var records: [PositionedRecord]
  public var end: MATPosition
  public var tornTail: (position: MATPosition, reason: String)?
  /// The first non-zero byte after the end, if any (recovery keeps and zeroes it).
  public var garbageAfterEnd: MATPosition?

  public static func verify(_ directory: TrailDirectory) throws -> TrailVerification {
    guard let first = try directory.snos().first else {
      throw TrailError.badFile(file: directory.path, reason: "no trail files")
    }
    let reader = try TrailReader(directory: directory, from: MATPosition(sno: first, rba: TrailFormat.firstRBA))
    let (records, stop) = try reader.readAll()
    var result = TrailVerification(records: records, end: reader.position, tornTail: nil, garbageAfterEnd: nil)
    switch stop {
    case .tornTail(let p, let reason):
      result.end = p
      result.tornTail = (p, reason)
    case .end(let p):
      result.end = p
      let file = try directory.open(sno: p.sno)
      if let i = try file.handle.firstNonZero(from: Int(p.rba), to: file.size) {
        result.garbageAfterEnd = MATPosition(sno: p.sno, rba: UInt64(i))
      }
    case .record: break
    }
    return result
  }
}
