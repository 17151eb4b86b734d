// What creating any node needs: a new or empty directory, absolute paths, a sane context.

import Foundation

public enum NodeSetup {
  public static func absolute(_ path: String) -> String {
    path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
  }

  /// A context name travels in every handshake: short, printable, no spaces.
  public static func checkContext(_ name: String) throws {
    guard (1...64).contains(name.utf8.count),
      name.unicodeScalars.allSatisfy({
        $0.isASCII && $0.properties.isAlphabetic || ("0"..."9").contains($0) || "-_.".unicodeScalars.contains($0)
      })
    else {
      throw NodeError.badConfig(
        path: name, reason: "a context name is 1 to 64 letters, digits, '-', '_' or '.'")
    }
  }

  /// Refuses a directory that already holds a node or anything else.
  public static func checkNewDirectory(_ layout: NodeLayout) throws {
    let fm = FileManager.default
    if fm.fileExists(atPath: layout.config) { throw NodeError.alreadyANode(layout.root) }
    if let contents = try? fm.contentsOfDirectory(atPath: layout.root), !contents.isEmpty {
      throw NodeError.badConfig(
        path: layout.root, reason: "the directory exists and is not empty; a node needs a new or empty directory")
    }
  }

  /// Undoes a node creation that failed part way. `checkNewDirectory` allowed only a new
  /// or empty directory, so whatever a node puts there can go.
  public static func removePartial(_ layout: NodeLayout, createdDirectory: Bool) {
    let fm = FileManager.default
    if createdDirectory {
      try? fm.removeItem(atPath: layout.root)
      return
    }
    for name in ["mat", "image", "state", "understudy.json", "secret.key"] {
      try? fm.removeItem(atPath: layout.root + "/" + name)
    }
  }
}
