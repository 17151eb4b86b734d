// A backup's image trail: a copy of its primary's MAT, the same bytes at the same
// `sno:rba`, so that positions mean the same on both sides. The receiver appends what
// arrives only where its own trail ends, checks every record's checksum and chain
// before writing, and syncs before it acknowledges.

import Foundation

public enum ImageTrailProblem: Error, CustomStringConvertible {
  /// Records that do not start where the image trail ends: the stream restarts from it.
  case notContiguous(expected: MATPosition, got: MATPosition)
  case noFile(position: MATPosition)
  case unexpectedFile(sno: UInt32, end: MATPosition)
  case badRecords(position: MATPosition, reason: String)
  case differentHeader(file: String)

  public var description: String {
    switch self {
    case .notContiguous(let expected, let got):
      "records arrived for \(got) but the image trail ends at \(expected) (\(got < expected ? "overlap" : "gap"))"
    case .noFile(let p): "records arrived for \(p) before the file's header"
    case .unexpectedFile(let sno, let end): "trail file \(sno) announced while the image trail ends at \(end)"
    case .badRecords(let p, let reason): "bad records at \(p): \(reason)"
    case .differentHeader(let file): "the primary's header for \(file) differs from the one on disk"
    }
  }
}

public final class ImageTrailWriter {
  public let directory: TrailDirectory
  /// Where the next record goes.
  public private(set) var end: MATPosition
  /// The checksum of the record before `end`, once known (not right after an initial copy).
  public private(set) var lastCRC: UInt32?
  /// The start of the last record written or found, with its checksum.
  public private(set) var last: (position: MATPosition, crc: UInt32)?
  private var file: FileHandle?
  private var fileSize = 0
  private var dirty = false
  /// Set by `refetchLast`: the first record to arrive must be this one again.
  private var refetching: (end: MATPosition, txid: TransactionID)?

  /// Opens the image trail at its clean end, reading forward from what the backup
  /// database holds: the start of its last applied record (`last`) and the end of it
  /// (`applied`). Right after an initial copy the image trail is empty and ends at
  /// `applied`. Cuts a torn tail; returns how many bytes were cut.
  public static func open(directory: TrailDirectory, last: MATPosition?, applied: MATPosition) throws -> (
    ImageTrailWriter, cut: Int
  ) {
    try FileManager.default.createDirectory(atPath: directory.path, withIntermediateDirectories: true)
    let writer = ImageTrailWriter(directory: directory, end: applied)
    guard directory.fileExists(sno: applied.sno) else { return (writer, 0) }
    // The last applied record is in the image trail unless the database was copied
    // after it; its checksum is what the next record must name.
    var reader = try TrailReader(directory: directory, from: applied)
    var lastRecord: (MATPosition, UInt32)?
    if let last, last.sno == applied.sno {
      let before = try TrailReader(directory: directory, from: last)
      if case .record(let r) = try before.next(), r.end == applied {
        lastRecord = (r.position, r.crc)
        reader = before
      }
    }
    let end: MATPosition
    loop: while true {
      switch try reader.next() {
      case .record(let r): lastRecord = (r.position, r.crc)
      case .end(let p), .tornTail(let p, _):
        end = p
        break loop
      }
    }
    let cut = try TrailTail.cut(directory: directory, at: end)
    writer.end = end
    writer.lastCRC = reader.lastCRC
    writer.last = lastRecord
    try writer.openFile(sno: end.sno)
    return (writer, cut)
  }

  /// Right after an initial copy the image trail lacks the record before its end, so the
  /// next record's chain could not be checked. Start one record earlier instead: the
  /// primary sends the database's last record again (the same bytes at the same place),
  /// which must end at the current end and carry `txid`.
  public func refetchLast(at last: MATPosition, txid: TransactionID) {
    guard lastCRC == nil, last < end, last.sno == end.sno else { return }
    refetching = (end, txid)
    end = last
  }

  private init(directory: TrailDirectory, end: MATPosition) {
    self.directory = directory
    self.end = end
  }

  /// Bytes left in the open file after the end (nil before one is open): the most a
  /// records frame may carry next.
  public var roomInFile: Int? { file == nil ? nil : max(0, fileSize - Int(end.rba)) }

  private func openFile(sno: UInt32) throws {
    let handle = try FileHandle(path: directory.filePath(sno: sno), flags: O_RDWR)
    file = handle
    fileSize = try handle.size()
  }

  /// The primary's stream enters trail file `header.sno`: create it here (same header,
  /// same size) or check the one on disk. Only the current file or the next one may be
  /// announced; moving to the next one means the current one is complete.
  public func beginFile(header bytes: [UInt8], size: Int) throws {
    guard case .success(let header) = FileHeader.decode(bytes) else {
      throw ImageTrailProblem.badRecords(position: end, reason: "the announced file header does not decode")
    }
    guard size >= TrailFormat.fileHeaderSize + TrailFormat.recordHeaderSize, size <= 1 << 40 else {
      throw ImageTrailProblem.badRecords(position: end, reason: "announced file size \(size) is implausible")
    }
    // The file on disk, if any, must be the one announced; otherwise it is made whole.
    func ensureFile() throws {
      let path = directory.filePath(sno: header.sno)
      if DurableFile.exists(path) {
        let existing = try FileHandle(path: path, flags: O_RDONLY).read(count: TrailFormat.fileHeaderSize, at: 0)
        guard existing == bytes else { throw ImageTrailProblem.differentHeader(file: path) }
      } else {
        try DurableFile.create(path: path, contents: bytes, zeroFill: size)
      }
    }
    if header.sno == end.sno {
      try ensureFile()
      if end.rba == TrailFormat.firstRBA { lastCRC = header.chainSeed }
      if file == nil { try openFile(sno: header.sno) }
    } else if header.sno == end.sno + 1 && file != nil {
      if let lastCRC, header.chainSeed != lastCRC {
        throw ImageTrailProblem.badRecords(
          position: end, reason: "the new file's chain seed does not match the last record's checksum")
      }
      try sync()
      try ensureFile()
      end = MATPosition(sno: header.sno, rba: TrailFormat.firstRBA)
      lastCRC = header.chainSeed
      try openFile(sno: header.sno)
    } else {
      throw ImageTrailProblem.unexpectedFile(sno: header.sno, end: end)
    }
  }

  /// The records in `bytes`, whole and in order, as they lie from `position`.
  public struct Appended {
    public var count: Int
    public var newestCommitMicros: Int64
  }

  /// Checks and writes records that start exactly at the image trail's end. Not durable
  /// until `sync`.
  public func append(position: MATPosition, bytes: [UInt8]) throws -> Appended {
    guard position == end else { throw ImageTrailProblem.notContiguous(expected: end, got: position) }
    guard let file else { throw ImageTrailProblem.noFile(position: position) }
    guard Int(position.rba) + bytes.count <= fileSize else {
      throw ImageTrailProblem.badRecords(position: position, reason: "records run past the end of the file")
    }
    var offset = 0
    var crc = lastCRC
    var newest: Int64 = 0
    var count = 0
    var lastStart = last
    while offset < bytes.count {
      let at = MATPosition(sno: position.sno, rba: position.rba + UInt64(offset))
      guard bytes.count - offset >= TrailFormat.recordHeaderSize else {
        throw ImageTrailProblem.badRecords(position: at, reason: "a record header is cut short")
      }
      let length = Int(bytes.readLE(UInt32.self, at: offset))
      let size = TrailFormat.recordSize(payloadCount: length)
      guard length <= TrailFormat.maxPayload, offset + size <= bytes.count else {
        throw ImageTrailProblem.badRecords(position: at, reason: "a record runs past the frame")
      }
      switch Record.decode(Array(bytes[offset..<(offset + size)])) {
      case .failure(let problem): throw ImageTrailProblem.badRecords(position: at, reason: problem.description)
      case .success(let (record, recordCRC)):
        if let crc, record.prevCRC != crc {
          throw ImageTrailProblem.badRecords(
            position: at, reason: "chain broken: the record does not follow the last one")
        }
        if let expected = refetching, count == 0 {
          let recordEnd = MATPosition(sno: at.sno, rba: at.rba + UInt64(size))
          guard record.txid == expected.txid, recordEnd == expected.end else {
            throw ImageTrailProblem.badRecords(
              position: at,
              reason:
                "expected the database's last transaction \(expected.txid) ending at \(expected.end), got \(record.txid) ending at \(recordEnd)"
            )
          }
        }
        crc = recordCRC
        newest = record.commitMicros
        lastStart = (at, recordCRC)
      }
      offset += size
      count += 1
    }
    try file.write(bytes, at: Int(position.rba))
    refetching = nil
    dirty = true
    end.rba += UInt64(bytes.count)
    lastCRC = crc
    last = lastStart
    return Appended(count: count, newestCommitMicros: newest)
  }

  public func sync() throws {
    guard dirty, let file else { return }
    try file.syncData()
    dirty = false
  }
}

extension TrailDirectory {
  /// Raw bytes of one trail file.
  public func readBytes(sno: UInt32, at rba: UInt64, count: Int) throws -> [UInt8] {
    try FileHandle(path: filePath(sno: sno), flags: O_RDONLY).read(count: count, at: Int(rba))
  }

  /// The header bytes and size of one trail file.
  public func headerAndSize(sno: UInt32) throws -> (header: [UInt8], size: Int) {
    let file = try open(sno: sno)
    return (try file.handle.read(count: TrailFormat.fileHeaderSize, at: 0), file.size)
  }
}
