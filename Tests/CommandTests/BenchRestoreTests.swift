import Foundation
import TestSupport
import XCTest

final class BenchRestoreTests: XCTestCase {
  func testBenchRestoreJSONMatchesItsSchema() throws {
    let root = try temporaryDirectory(self)
    let bench = try understudy(["bench", "restore", "--rows", "2000", "--back", "10,50", "--dir", root, "--json"])
    XCTAssertEqual(bench.status, 0, bench.stderr)
    try assertConforms(bench.json, to: "bench-restore.schema.json")
    let restores = try XCTUnwrap((bench.json as? [String: Any])?["restores"] as? [[String: Any]])
    XCTAssertEqual(restores.map { $0["back"] as? Int }, [0, 10, 50])
    XCTAssertEqual(restores.map { $0["undone"] as? Int }, [0, 10, 50])
    XCTAssertEqual((bench.json as? [String: Any])?["transactions"] as? Int, 50)
  }
}
