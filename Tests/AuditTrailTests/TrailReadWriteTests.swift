import Foundation
import TestSupport
import XCTest

@testable import AuditTrail

final class TrailReadWriteTests: XCTestCase {
  func testRecordsRoundTripAcrossRollovers() throws {
    let dir = TrailDirectory(path: try temporaryDirectory(self))
    // Sizes cross file boundaries often; 9000 is larger than a whole file.
    let sizes = [10, 200, 3000, 0, 9000, 50, 1000, 1000, 1000, 1000, 7, 2500]
    let written = try writeTrail(dir, fileSize: 4096, sizes: sizes)
    XCTAssertGreaterThanOrEqual(try dir.snos().count, 4)
    let v = try TrailVerification.verify(dir)
    XCTAssertEqual(v.records.count, sizes.count)
    for (i, r) in v.records.enumerated() {
      XCTAssertEqual(r.position, written[i].position)
      XCTAssertEqual(r.end, written[i].end)
      XCTAssertEqual(r.record.payload, payload(i, size: sizes[i]))
      XCTAssertEqual(r.record.txid, TransactionID(UInt64(i + 1)))
    }
    XCTAssertEqual(v.end, written.last!.end)
    XCTAssertNil(v.tornTail)
    XCTAssertNil(v.garbageAfterEnd)
    // A reader started at any record boundary reads the rest.
    for (i, w) in written.enumerated() {
      let (records, _) = try TrailReader(directory: dir, from: w.position).readAll()
      XCTAssertEqual(records.map(\.position), written[i...].map(\.position))
    }
  }

  func testAWriterContinuesAfterReopenAndOneBatchIsOneGroup() throws {
    let dir = TrailDirectory(path: try temporaryDirectory(self))
    let first = try writeTrail(dir, fileSize: 4096, sizes: [100, 100])
    let node = try TrailReader(directory: dir, from: first[0].position).nodeID
    let writer = try TrailWriter(
      directory: dir, nodeID: node, generation: Generation(1), fileSize: 4096, end: first[1].end, lastCRC: first[1].crc)
    let batch = (0..<30).map {
      PendingRecord(
        type: .commit, txid: TransactionID(UInt64(3 + $0)), commitMicros: 0, payload: payload($0, size: 300))
    }
    let appended = try writer.append(batch)
    XCTAssertEqual(appended.count, 30)
    let v = try TrailVerification.verify(dir)
    XCTAssertEqual(v.records.count, 32)
    XCTAssertEqual(v.records.map(\.record.txid.rawValue), Array(1...32))
  }

  func testEveryTruncationPointOfTheLastRecordIsATornTail() throws {
    let root = try temporaryDirectory(self)
    let original = TrailDirectory(path: root + "/original")
    try FileManager.default.createDirectory(atPath: original.path, withIntermediateDirectories: true)
    let written = try writeTrail(original, fileSize: 8192, sizes: [40, 300, 123])
    let last = written[2]
    let file = original.filePath(sno: last.position.sno)
    let bytes = try readBytes(file)
    // Every byte of the record that carries data (the zero padding after it is zero anyway).
    for cut in Int(last.position.rba)..<(Int(last.position.rba) + 32 + 123) {
      for physical in [false, true] {
        let copy = TrailDirectory(path: root + "/cut-\(cut)-\(physical)")
        try FileManager.default.createDirectory(atPath: copy.path, withIntermediateDirectories: true)
        // Unwritten space in a preallocated file is zeros; a shorter file is the other way to be torn.
        let torn =
          physical ? Array(bytes[0..<cut]) : Array(bytes[0..<cut]) + [UInt8](repeating: 0, count: bytes.count - cut)
        try writeBytes(torn, copy.filePath(sno: 1))
        let v = try TrailVerification.verify(copy)
        XCTAssertEqual(v.records.count, 2, "cut at \(cut)")
        XCTAssertEqual(v.end, last.position, "cut at \(cut)")
        // An all-zero header is the plain end of the trail; anything else is a torn record.
        if cut > Int(last.position.rba) + 0
          && torn[Int(last.position.rba)..<min(cut, Int(last.position.rba) + 32)].contains(where: { $0 != 0 })
        {
          XCTAssertEqual(v.tornTail?.position, last.position, "cut at \(cut)")
        }
        // Recovery cuts it: afterwards the trail ends cleanly at the last whole record.
        _ = try TrailTail.cut(directory: copy, at: v.end)
        let after = try TrailVerification.verify(copy)
        XCTAssertNil(after.tornTail)
        XCTAssertNil(after.garbageAfterEnd)
        XCTAssertEqual(after.records.count, 2)
        try FileManager.default.removeItem(atPath: copy.path)
      }
    }
  }

  func testAFlippedBitAnywhereIsDetectedAndNamed() throws {
    let seed = testSeed("flipped bit")
    var rng = SeededGenerator(seed: seed)
    let root = try temporaryDirectory(self)
    let original = TrailDirectory(path: root + "/original")
    try FileManager.default.createDirectory(atPath: original.path, withIntermediateDirectories: true)
    try writeTrail(original, fileSize: 4096, sizes: (0..<20).map { _ in Int.random(in: 0...900, using: &rng) })
    let snos = try original.snos()
    let baseline = try TrailVerification.verify(original)
    for round in 0..<400 {
      let sno = snos.randomElement(using: &rng)!
      let copy = TrailDirectory(path: root + "/flip-\(round)")
      try FileManager.default.copyItem(atPath: original.path, toPath: copy.path)
      var bytes = try readBytes(copy.filePath(sno: sno))
      let offset = Int.random(in: 0..<bytes.count, using: &rng)
      bytes[offset] ^= UInt8(1 << Int.random(in: 0..<8, using: &rng))
      try writeBytes(bytes, copy.filePath(sno: sno))
      let context = "seed \(seed) round \(round): bit flipped in \(TrailFormat.fileName(sno: sno)) at byte \(offset)"
      do {
        let v = try TrailVerification.verify(copy)
        // Not an error: then it must show as a torn last record or as damage after the end.
        let lastRecordStart = baseline.records.last!.position
        if let torn = v.tornTail {
          // Damage in the last record, or a header-like flip right at the end.
          XCTAssertTrue(
            [lastRecordStart, baseline.end].contains(torn.position), "\(context): torn at \(torn.position)")
          XCTAssertEqual(sno, lastRecordStart.sno, context)
          if torn.position == baseline.end {
            XCTAssertTrue(v.records.map(\.record) == baseline.records.map(\.record), context)
          }
        } else {
          XCTAssertNotNil(
            v.garbageAfterEnd, "\(context): read \(v.records.count) of \(baseline.records.count) records to \(v.end)")
          XCTAssertTrue(v.records.map(\.record) == baseline.records.map(\.record), context)
        }
      } catch let error as TrailError {
        let text = "\(error)"
        XCTAssertTrue(text.contains(TrailFormat.fileName(sno: sno)), "\(context): \(text)")
        if case .corrupt(_, let position, _) = error {
          XCTAssertEqual(position.sno, sno, context)
          XCTAssertTrue(text.contains(position.description), context)
        }
      }
      try FileManager.default.removeItem(atPath: copy.path)
    }
  }

  func testDamageBeforeTheLastRecordIsCorruptionNotATornTail() throws {
    let dir = TrailDirectory(path: try temporaryDirectory(self))
    let written = try writeTrail(dir, fileSize: 65536, sizes: [100, 100, 100, 100, 100])
    var bytes = try readBytes(dir.filePath(sno: 1))
    bytes[Int(written[1].position.rba) + 40] ^= 0x10
    try writeBytes(bytes, dir.filePath(sno: 1))
    XCTAssertThrowsError(try TrailVerification.verify(dir)) { error in
      guard case TrailError.corrupt(let file, let position, let reason) = error else { return XCTFail("\(error)") }
      XCTAssertTrue(file.hasSuffix("AA00000001"))
      XCTAssertEqual(position, written[1].position)
      XCTAssertTrue(reason.contains("a valid record follows at \(written[2].position)"), reason)
    }
    // Recovery must not cut there either.
    XCTAssertThrowsError(try TrailTail.cut(directory: dir, at: written[1].position))
  }

  /// A reader that follows a trail while it is written (the updater, `status`) can read
  /// a record before all its bytes are there and find the records after it complete by
  /// the time it looks past it. That is a write in progress, not corruption.
  func testAReaderFollowingATrailAsItIsWrittenNeverReportsCorruption() throws {
    let root = try temporaryDirectory(self)
    let original = TrailDirectory(path: root + "/original")
    let copy = TrailDirectory(path: root + "/copy")
    for dir in [original, copy] {
      try FileManager.default.createDirectory(atPath: dir.path, withIntermediateDirectories: true)
    }
    let seed = testSeed("following a trail as it is written")
    var random = SeededGenerator(seed: seed)
    let sizes = (0..<3000).map { _ in Int.random(in: 20...400, using: &random) }
    let written = try writeTrail(original, fileSize: 4 << 20, sizes: sizes)
    let bytes = try readBytes(original.filePath(sno: 1))
    let start = Int(TrailFormat.firstRBA)
    let end = Int(written.last!.end.rba)
    // The copy starts as the header and zeros; a thread then writes the records in
    // pieces that split them anywhere, as a page-by-page write can appear to a reader.
    try DurableFile.create(path: copy.filePath(sno: 1), contents: Array(bytes[..<start]), zeroFill: bytes.count)
    let file = try FileHandle(path: copy.filePath(sno: 1), flags: O_RDWR)
    let pieces = (0..<10_000).map { _ in Int.random(in: 1...200, using: &random) }
    let writer = Thread {
      var offset = start
      var i = 0
      while offset < end {
        let count = min(pieces[i % pieces.count], end - offset)
        try? file.write(Array(bytes[offset..<(offset + count)]), at: offset)
        offset += count
        i += 1
        usleep(20)  // slower than the reader, so that it keeps meeting the write in progress
      }
    }
    let reader = try TrailReader(directory: copy, from: MATPosition(sno: 1, rba: TrailFormat.firstRBA))
    writer.start()
    var read = 0
    let deadline = Date().addingTimeInterval(60)
    while read < sizes.count && Date() < deadline {
      if case .record(let r) = try reader.next() {
        XCTAssertEqual(r.position, written[read].position, "seed \(seed)")
        read += 1
      }
    }
    XCTAssertEqual(read, sizes.count, "seed \(seed)")
  }

  func testARemovedRecordBreaksTheChain() throws {
    let dir = TrailDirectory(path: try temporaryDirectory(self))
    let written = try writeTrail(dir, fileSize: 65536, sizes: [64, 64, 64, 64])
    var bytes = try readBytes(dir.filePath(sno: 1))
    let a = Int(written[1].position.rba)
    let b = Int(written[1].end.rba)
    bytes.removeSubrange(a..<b)  // the records after it slide into its place
    bytes += [UInt8](repeating: 0, count: b - a)
    try writeBytes(bytes, dir.filePath(sno: 1))
    XCTAssertThrowsError(try TrailVerification.verify(dir)) { error in
      XCTAssertTrue("\(error)".contains("chain broken"), "\(error)")
      XCTAssertTrue("\(error)".contains(written[1].position.description), "\(error)")
    }
  }

  func testAMissingMiddleFileOrBadPositionIsRefused() throws {
    let dir = TrailDirectory(path: try temporaryDirectory(self))
    try writeTrail(dir, fileSize: 4096, sizes: [3000, 3000, 3000])
    XCTAssertThrowsError(try TrailReader(directory: dir, from: MATPosition(sno: 1, rba: 65))) {
      XCTAssertTrue("\($0)".contains("1:65 is not a record boundary"), "\($0)")
    }
    XCTAssertThrowsError(try TrailReader(directory: dir, from: MATPosition(sno: 9, rba: 64))) {
      XCTAssertTrue("\($0)".contains("AA00000009"), "\($0)")
    }
    try FileManager.default.removeItem(atPath: dir.filePath(sno: 2))
    XCTAssertThrowsError(try TrailVerification.verify(dir))
  }
}
