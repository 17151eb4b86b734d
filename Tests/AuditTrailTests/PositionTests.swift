import AuditTrail
import Foundation
import XCTest

final class PositionTests: XCTestCase {
  func testParsesAndPrintsSnoColonRba() throws {
    let p = try MATPosition(parsing: "3:81920")
    XCTAssertEqual(p, MATPosition(sno: 3, rba: 81920))
    XCTAssertEqual(p.description, "3:81920")
  }

  func testRejectsMalformedPositionsWithTheTextInTheError() {
    for bad in ["", "3", "3:", ":64", "a:64", "3:x", "3:64:1", "0:64", "-1:64", "3:-64", " 3:64", "99999999999:1"] {
      XCTAssertThrowsError(try MATPosition(parsing: bad), bad) { error in
        XCTAssertTrue("\(error)".contains("'\(bad)'"), "\(error)")
      }
    }
  }

  func testOrdersBySnoThenRba() {
    let ps = [
      MATPosition(sno: 2, rba: 64), MATPosition(sno: 1, rba: 9000), MATPosition(sno: 2, rba: 8),
      MATPosition(sno: 1, rba: 64),
    ]
    XCTAssertEqual(ps.sorted().map(\.description), ["1:64", "1:9000", "2:8", "2:64"])
  }

  func testEncodesAsSnoRbaObject() throws {
    let data = try JSONEncoder().encode(MATPosition(sno: 3, rba: 81920))
    let object = try JSONSerialization.jsonObject(with: data) as? [String: Int]
    XCTAssertEqual(object, ["sno": 3, "rba": 81920])
  }

  func testFileNames() {
    XCTAssertEqual(TrailFormat.fileName(sno: 1), "AA00000001")
    XCTAssertEqual(TrailFormat.fileName(sno: 12_345_678), "AA12345678")
    XCTAssertEqual(TrailFormat.sno(fileName: "AA00000002"), 2)
    XCTAssertNil(TrailFormat.sno(fileName: "AA00000002.tmp"))
    XCTAssertNil(TrailFormat.sno(fileName: "AB00000002"))
  }
}
