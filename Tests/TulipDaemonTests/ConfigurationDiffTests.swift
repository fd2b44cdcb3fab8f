import Testing

@testable import TulipDaemon

/// The reload diff (ARCHITECTURE §5, lifecycle step 5): listeners matched by name.
struct ConfigurationDiffTests {
    private func tcp(
        _ name: String,
        _ port: Int,
        protocol: String = "echo",
        hosts: [String] = ["127.0.0.1"]
    )
        -> ListenerConfiguration
    {
        ListenerConfiguration(
            name: name,
            protocolName: `protocol`,
            endpoint: .tcp(TCPEndpoint(hosts: hosts, port: port))
        )
    }

    @Test func sortsListenersIntoAddedRemovedChangedAndUnchanged() {
        let old = [self.tcp("keep", 1), self.tcp("gone", 2), self.tcp("swap", 3)]
        let new = [self.tcp("added", 4), self.tcp("swap", 3, protocol: "discard"), self.tcp("keep", 1)]
        let diff = ConfigurationDiff(old: old, new: new)
        #expect(diff.added == ["added"])
        #expect(diff.removed == ["gone"])
        #expect(diff.changed == ["swap"])
        #expect(diff.unchanged == ["keep"])
        #expect(!diff.isEmpty)
    }

    @Test func sameConfigurationIsAllUnchanged() {
        let listeners = [self.tcp("a", 1), self.tcp("b", 2)]
        let diff = ConfigurationDiff(old: listeners, new: listeners)
        #expect(diff.unchanged == ["a", "b"])
        #expect(diff.isEmpty)
    }

    @Test func whereTheListenerIsWrittenDoesNotCount() {
        var moved = self.tcp("a", 1)
        moved.keyPath = "listeners[3]"
        moved.locations = ListenerConfiguration.Locations(listener: JSONValue.Location(line: 9, column: 3))
        var original = self.tcp("a", 1)
        original.keyPath = "listeners[0]"
        #expect(ConfigurationDiff(old: [original], new: [moved]).unchanged == ["a"])
    }

    @Test func everyPartOfTheConfigurationCounts() {
        let base = self.tcp("a", 1)
        var options = base
        options.options = .object(JSONObject())
        var tls = base
        tls.tls = TLSFileConfiguration(certificateChainFile: "/c.pem", privateKeyFile: "/k.pem")
        var backlog = base
        backlog.endpoint = .tcp(TCPEndpoint(hosts: ["127.0.0.1"], port: 1, backlog: 5))
        let unix = ListenerConfiguration(name: "a", protocolName: "echo", endpoint: .unix(UnixEndpoint(path: "/s")))
        for changed in [options, tls, backlog, unix, self.tcp("a", 1, protocol: "discard")] {
            #expect(ConfigurationDiff(old: [base], new: [changed]).changed == ["a"])
        }
    }

    @Test func renamedListenerIsRemovedAndAdded() {
        let diff = ConfigurationDiff(old: [self.tcp("old-name", 1)], new: [self.tcp("new-name", 1)])
        #expect(diff.added == ["new-name"])
        #expect(diff.removed == ["old-name"])
        #expect(diff.changed.isEmpty && diff.unchanged.isEmpty)
    }

    @Test func namesKeepConfigurationOrder() {
        let old = [self.tcp("z", 1), self.tcp("y", 2), self.tcp("x", 3)]
        let new = [self.tcp("c", 4), self.tcp("b", 5), self.tcp("a", 6)]
        let diff = ConfigurationDiff(old: old, new: new)
        #expect(diff.removed == ["z", "y", "x"])
        #expect(diff.added == ["c", "b", "a"])
    }

    @Test func socketsAreHandedOverOnlyAtTheSameAddress() {
        typealias Diff = ConfigurationDiff
        let tcp = ListenerEndpoint.tcp(TCPEndpoint(hosts: ["127.0.0.1"], port: 7))
        #expect(Diff.canHandOverSockets(from: tcp, to: .tcp(TCPEndpoint(hosts: ["127.0.0.1"], port: 7, backlog: 9))))
        #expect(!Diff.canHandOverSockets(from: tcp, to: .tcp(TCPEndpoint(hosts: ["127.0.0.1"], port: 8))))
        #expect(!Diff.canHandOverSockets(from: tcp, to: .tcp(TCPEndpoint(hosts: ["127.0.0.2"], port: 7))))
        #expect(!Diff.canHandOverSockets(from: tcp, to: .udp(UDPEndpoint(hosts: ["127.0.0.1"], port: 7))))
        let unix = ListenerEndpoint.unix(UnixEndpoint(path: "/run/a.sock"))
        #expect(Diff.canHandOverSockets(from: unix, to: .unix(UnixEndpoint(path: "/run/a.sock", mode: 0o600))))
        #expect(!Diff.canHandOverSockets(from: unix, to: .unix(UnixEndpoint(path: "/run/b.sock"))))
        let dgram = ListenerEndpoint.unixDatagram(UnixDatagramEndpoint(path: "/run/d"))
        #expect(Diff.canHandOverSockets(from: dgram, to: dgram))
        let udp = ListenerEndpoint.udp(UDPEndpoint(port: 9))
        #expect(Diff.canHandOverSockets(from: udp, to: .udp(UDPEndpoint(port: 9, allowBroadcast: true))))
        let pipe = ListenerEndpoint.pipe(PipeEndpoint(readPath: "/in"))
        #expect(!Diff.canHandOverSockets(from: pipe, to: pipe))
    }
}
