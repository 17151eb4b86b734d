// swift-tools-version:6.0
import PackageDescription

let package = Package(
  name: "Understudy",
  platforms: [.macOS(.v15)],
  products: [
    .executable(name: "understudy", targets: ["understudy"]),
    .executable(name: "rtdr", targets: ["rtdr"]),
    .executable(name: "rtstart", targets: ["rtstart"]),
    .executable(name: "rtstop", targets: ["rtstop"]),
    .executable(name: "scconfig", targets: ["scconfig"]),
    .executable(name: "scrt_ra", targets: ["scrt_ra"]),
    .executable(name: "rtmark", targets: ["rtmark"]),
    .library(
      name: "Understudy", targets: ["AuditTrail", "SQLiteSupport", "Node", "Link", "Apply", "Primary", "Backup", "Procedures", "MIMIX"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"4.0.0"),
    .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
    .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    .package(url: "https://github.com/swhitty/FlyingFox", from: "0.27.1"),
  ],
  targets: [
    // The system SQLite, with the session extension's declarations switched on in the shim.
    .systemLibrary(
      name: "CUnderstudySQLite",
      providers: [.apt(["libsqlite3-dev"])]
    ),
    // TLS 1.3 for the link, over the system OpenSSL (Debian's libssl-dev): a few plain C
    // functions, so that OpenSSL's macros stay out of Swift.
    .target(name: "CTLS", linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto")]),
    // CRC-32C with the CPU's own instruction (SSE4.2), where it has one.
    .target(name: "CCRC32C"),
    // The Master Audit Trail: positions, file and record format, writer, reader. No SQLite here.
    .target(name: "AuditTrail", dependencies: ["CCRC32C"]),
    // A thin, owned wrapper over SQLite connections, statements, sessions and changesets.
    .target(name: "SQLiteSupport", dependencies: ["CUnderstudySQLite"]),
    // A node on disk: its config, layout, lock, and the logical checksum of its database.
    .target(
      name: "Node",
      dependencies: ["AuditTrail", "SQLiteSupport", .product(name: "Crypto", package: "swift-crypto")]
    ),
    // The replication link: frames, messages, the authenticated handshake, TCP sockets under TLS 1.3.
    .target(
      name: "Link",
      dependencies: ["AuditTrail", "Node", "CTLS", .product(name: "Crypto", package: "swift-crypto")]
    ),
    // What both roles do to a node's database: apply commit records (replay), the state
    // table, the initial copy's sending side, the backups a node knows, promotion.
    .target(name: "Apply", dependencies: ["AuditTrail", "SQLiteSupport", "Node", "Link"]),
    // The primary: audited transactions, group commit, recovery on open, the extractor.
    .target(name: "Primary", dependencies: ["AuditTrail", "SQLiteSupport", "Node", "Link", "Apply"]),
    // The backup: receiver, image trail, updater, purger, initial copy.
    .target(name: "Backup", dependencies: ["AuditTrail", "SQLiteSupport", "Node", "Link", "Apply"]),
    // The operator's procedures around the pipeline: takeover, file recovery to a MAT
    // position, follow, resolve.
    .target(
      name: "Procedures", dependencies: ["AuditTrail", "SQLiteSupport", "Node", "Link", "Apply", "Primary", "Backup"]),
    // The MIMIX surface: a server's home and its contexts, and the rtdr cycle over the procedures.
    .target(
      name: "MIMIX", dependencies: ["AuditTrail", "Node", "Link", "Apply", "Primary", "Backup", "Procedures"]),
    // `rtdr`, `rtstart`, `rtstop`, `scconfig`, `scrt_ra`, `rtmark`: MIMIX's command names, each running
    // `understudy <name> …` (the binary beside it), so there is one implementation.
    .target(name: "CommandAlias", path: "Sources/Aliases/CommandAlias"),
    .executableTarget(name: "rtdr", dependencies: ["CommandAlias"], path: "Sources/Aliases/rtdr"),
    .executableTarget(name: "rtstart", dependencies: ["CommandAlias"], path: "Sources/Aliases/rtstart"),
    .executableTarget(name: "rtstop", dependencies: ["CommandAlias"], path: "Sources/Aliases/rtstop"),
    .executableTarget(name: "scconfig", dependencies: ["CommandAlias"], path: "Sources/Aliases/scconfig"),
    .executableTarget(name: "scrt_ra", dependencies: ["CommandAlias"], path: "Sources/Aliases/scrt_ra"),
    .executableTarget(name: "rtmark", dependencies: ["CommandAlias"], path: "Sources/Aliases/rtmark"),
    // Watching a running node: Prometheus metrics, Patroni-style health endpoints over HTTP,
    // logs through swift-log, and systemd's readiness notification.
    .target(
      name: "Observe",
      dependencies: [
        "AuditTrail", "Node", "Primary", "Backup", "Procedures",
        .product(name: "Metrics", package: "swift-metrics"),
        .product(name: "Prometheus", package: "swift-prometheus"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "FlyingFox", package: "FlyingFox"),
      ]
    ),
    // Child processes of the `understudy` binary, for the demo, the benchmarks and the
    // tests: a command run to completion, a daemon, a writer fed over a pipe.
    .target(name: "Harness", dependencies: ["AuditTrail", "Node", "Link"]),
    // The command line: parses, calls a procedure, prints.
    .executableTarget(
      name: "understudy",
      dependencies: [
        "AuditTrail", "SQLiteSupport", "Node", "Link", "Apply", "Primary", "Backup", "Procedures", "MIMIX", "Harness",
        "Observe",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Logging", package: "swift-log"),
      ]
    ),
    .target(name: "TestSupport", dependencies: ["Node"], path: "Tests/TestSupport"),
    .testTarget(name: "AuditTrailTests", dependencies: ["AuditTrail", "TestSupport"]),
    // The link's frame decoder and state machines, without sockets.
    .testTarget(name: "LinkTests", dependencies: ["AuditTrail", "Node", "Link"]),
    .testTarget(name: "PrimaryTests", dependencies: ["AuditTrail", "SQLiteSupport", "Node", "Apply", "Primary", "TestSupport"]),
    // Runs the built `understudy` binary as a real process (it depends on the target so
    // that `swift test` builds it first).
    .testTarget(
      name: "CommandTests",
      dependencies: [
        "AuditTrail", "SQLiteSupport", "Node", "Link", "Apply", "Primary", "Procedures", "TestSupport", "Harness", "understudy",
        "rtdr", "rtstart",
        "rtstop", "scconfig", "scrt_ra", "rtmark",
      ]
    ),
  ]
)
