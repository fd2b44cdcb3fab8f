import Testing

@testable import TulipPlugins

#if canImport(Glibc)
import Glibc
#endif

struct FilesPluginTests {
    /// Hostile or malformed request lines: every one is refused before the file system is touched.
    static let hostile: [[UInt8]] =
        [
            "", "\r", "..", ".", "../etc/passwd", "../../../../etc/shadow", "a/../../etc/passwd",
            "a/..", "a/../b", "./a", "a/./b", "a/.", "/etc/passwd", "/", "//etc/passwd", "/tmp/x",
            "a//b", "a/", "dir/", "/../x", "..\\..\\etc", "a/\u{0}b", "\u{0}", "a\u{0}", "a\tb",
            "a\u{1b}[2Jb", "a\u{7f}", "x\ry", "\u{0}../etc/passwd", "....//..../", "a/../",
            String(repeating: "a", count: 256), String(repeating: "a/", count: 2100) + "a",
            String(repeating: "x", count: 4097),
        ].map { Array($0.utf8) } + [
            [0xFF, 0xFE], [0x61, 0xC0, 0xAF], [0xC0, 0xAE, 0xC0, 0xAE, 0x2F, 0x65],  // overlong "../"
            [0xED, 0xA0, 0x80], [0x2E, 0x2E, 0x2F, 0x80],
        ]

    @Test(arguments: Self.hostile)
    func refusesHostileRequest(_ line: [UInt8]) {
        guard case .failure = FilesPlugin.parseRequest(line) else {
            Issue.record("accepted \(String(decoding: line, as: UTF8.self).debugDescription)")
            return
        }
    }

    @Test func thereAreAtLeastThirtyHostileRequests() {
        #expect(Self.hostile.count >= 30)
    }

    @Test(arguments: [
        ("a", ["a"]), ("dir/file.txt", ["dir", "file.txt"]), ("a b/ü.txt", ["a b", "ü.txt"]),
        ("x\r", ["x"]), ("...", ["..."]), (".hidden", [".hidden"]), ("a..b", ["a..b"]),
    ])
    func acceptsPlainRelativePaths(line: String, components: [String]) throws {
        #expect(try FilesPlugin.parseRequest(Array(line.utf8)).get() == components)
    }

    /// The resolver on a real tree: symbolic links, directories, FIFOs, sockets and devices are
    /// refused without being opened; regular files open.
    @Test func resolvesOnlyRegularFilesWithoutFollowingLinks() throws {
        var template = Array("/tmp/tulip-files-XXXXXX".utf8CString)
        let base = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        defer { _ = system("rm -rf '\(base)'") }
        let root = base + "/root"
        mkdir(root, 0o755)
        mkdir(root + "/sub", 0o755)
        mkdir(base + "/outside", 0o755)
        for (path, text) in [("/root/a.txt", "hello"), ("/root/sub/b.txt", "bee"), ("/outside/secret", "s")] {
            let fd = Glibc.open(base + path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            _ = write(fd, text, text.utf8.count)
            close(fd)
        }
        symlink("/etc/passwd", root + "/passwd")
        symlink(base + "/outside", root + "/out")
        symlink("a.txt", root + "/inside-link")
        symlink("sub", root + "/sublink")
        mkfifo(root + "/fifo", 0o644)

        let files = try FilesRoot(path: root)
        func open(_ path: String) -> Result<String, FilesPlugin.Refusal> {
            switch FilesPlugin.parseRequest(Array(path.utf8)).flatMap({ files.openFile($0) }) {
            case .success(let file):
                defer { close(file.descriptor) }
                var bytes = [UInt8](repeating: 0, count: file.size)
                _ = read(file.descriptor, &bytes, file.size)
                return .success(String(decoding: bytes, as: UTF8.self))
            case .failure(let refusal):
                return .failure(refusal)
            }
        }
        #expect(open("a.txt") == .success("hello"))
        #expect(open("sub/b.txt") == .success("bee"))
        for refused in [
            "passwd", "out/secret", "inside-link", "sublink/b.txt", "fifo", "sub", "missing",
            "a.txt/x", "../outside/secret",
        ] {
            guard case .failure = open(refused) else {
                Issue.record("\(refused) was opened")
                continue
            }
        }
        #expect(open("fifo") == .failure(FilesPlugin.Refusal("not a regular file")))
        #expect(open("passwd") == .failure(FilesPlugin.Refusal("symbolic link refused")))
    }

    @Test func rootMustBeAnExistingDirectory() {
        #expect(throws: FilesRoot.OpenError.self) { try FilesRoot(path: "/nonexistent-tulip-root") }
        #expect(throws: FilesRoot.OpenError.self) { try FilesRoot(path: "/etc/passwd") }
        #expect(throws: FilesRoot.OpenError.self) { try FilesRoot(path: "") }
    }
}
