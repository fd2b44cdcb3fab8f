import Logging
import Testing
import TulipPlugins

@testable import TulipDaemon

#if canImport(Glibc)
import Glibc
#endif

struct DaemonPlanTests {
    private func plan(_ json: String) throws -> DaemonPlan {
        let configuration = try DaemonConfiguration.parse(Array(json.utf8), file: "t.json")
        return try DaemonPlan(
            configuration: configuration,
            registry: TulipPlugins.makeRegistry(),
            logger: Logger(label: "t")
        )
    }

    private func errors(_ json: String) -> [ConfigurationError] {
        do {
            _ = try self.plan(json)
            return []
        } catch let error as ConfigurationErrors {
            return error.errors
        } catch {
            return []
        }
    }

    @Test func aValidConfigMakesOneFactoryPerListener() throws {
        let plan = try self.plan(
            #"{"listeners":[{"name":"a","protocol":"echo","tcp":{"port":1}},{"name":"b","protocol":"time","unix":{"path":"/tmp/x"}}]}"#
        )
        #expect(plan.listeners.map(\.plugin.name) == ["echo", "time"])
    }

    @Test func anUnknownPluginListsTheKnownOnes() {
        let errors = self.errors(#"{"listeners":[{"name":"a","protocol":"nope","tcp":{"port":1}}]}"#)
        #expect(errors.count == 1)
        #expect(errors.first?.keyPath == "listeners[0].protocol")
        #expect(errors.first?.message.contains("chargen, daytime, discard, echo, files, starttls-echo, time") == true)
    }

    @Test func aTLSListenerWithAMissingCertificateNamesTheKey() {
        let errors = self.errors(
            #"{"listeners":[{"name":"a","protocol":"echo","tcp":{"port":1},"tls":{"certificate_chain":"/nonexistent/c","private_key":"/nonexistent/k"}}]}"#
        )
        #expect(errors.count == 1)
        #expect(errors.first?.keyPath == "listeners[0].tls.certificate_chain")
        #expect(errors.first?.message.contains("/nonexistent/c") == true)
    }

    @Test func aTLSListenerLoadsItsFilesAndAMismatchedKeyIsRefused() throws {
        var template = Array("/tmp/tulip-plan-tls-XXXXXX".utf8CString)
        _ = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        let directory = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        defer { _ = system("rm -rf '\(directory)'") }
        let made = system(
            """
            cd '\(directory)' && \
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem -out cert.pem -days 2 -subj /CN=localhost 2>/dev/null && \
            openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out other.pem 2>/dev/null
            """
        )
        #expect(made == 0)
        let good = try self.plan(
            #"{"listeners":[{"name":"a","protocol":"echo","tcp":{"port":1},"tls":{"certificate_chain":"\#(directory)/cert.pem","private_key":"\#(directory)/key.pem","alpn":["h2"],"min_version":"1.3"}}]}"#
        )
        #expect(good.listeners.first?.tls != nil)
        let errors = self.errors(
            #"{"listeners":[{"name":"a","protocol":"echo","tcp":{"port":1},"tls":{"certificate_chain":"\#(directory)/cert.pem","private_key":"\#(directory)/other.pem"}}]}"#
        )
        #expect(errors.count == 1)
        #expect(errors.first?.keyPath == "listeners[0].tls.private_key")
        #expect(errors.first?.message.contains("does not match") == true)
    }

    @Test(arguments: ["udp", "unix_datagram"])
    func datagramKindsPassTheCheckForTheBuiltIns(kind: String) throws {
        let body = kind == "udp" ? #"{"port":1}"# : #"{"path":"/tmp/d"}"#
        for plugin in ["echo", "discard", "chargen", "daytime", "time"] {
            #expect(self.errors(#"{"listeners":[{"name":"a","protocol":"\#(plugin)","\#(kind)":\#(body)}]}"#).isEmpty)
        }
    }

    private struct StreamOnly: Plugin {
        typealias Options = NoOptions
        static let name = "stream-only"
        static let summary = "t"
        static let supportedKinds: Set<ListenerKind> = [.tcp, .unix]
        static func makeProtocolFactory(options: NoOptions, context: PluginContext) throws -> any ProtocolFactory {
            StreamProtocolFactory { EchoProtocol() }
        }
    }

    @Test(arguments: ["udp", "unix_datagram"])
    func aStreamOnlyPluginIsRejectedOnDatagramKinds(kind: String) throws {
        var registry = TulipPlugins.makeRegistry()
        registry.register(StreamOnly.self)
        let body = kind == "udp" ? #"{"port":1}"# : #"{"path":"/tmp/d"}"#
        let json = #"{"listeners":[{"name":"a","protocol":"stream-only","\#(kind)":\#(body)}]}"#
        let configuration = try DaemonConfiguration.parse(Array(json.utf8), file: "t.json")
        #expect {
            _ = try DaemonPlan(configuration: configuration, registry: registry, logger: Logger(label: "t"))
        } throws: { error in
            (error as? ConfigurationErrors)?.errors.first?.message.contains("does not support \(kind) listeners")
                == true
        }
    }

    @Test func rateLimitOptionsDecodeStrictly() {
        let ok = #"{"listeners":[{"name":"a","protocol":"echo","udp":{"port":1},"options":{"rate_limit":null}}]}"#
        #expect(self.errors(ok).isEmpty)
        let custom =
            #"{"listeners":[{"name":"a","protocol":"daytime","udp":{"port":1},"options":{"format":"rfc2822","rate_limit":{"per_second":5,"burst":10}}}]}"#
        #expect(self.errors(custom).isEmpty)
        let unknown =
            #"{"listeners":[{"name":"a","protocol":"echo","udp":{"port":1},"options":{"rate_limit":{"per_second":5,"burst":10,"x":1}}}]}"#
        #expect(!self.errors(unknown).isEmpty)
        let zero =
            #"{"listeners":[{"name":"a","protocol":"time","udp":{"port":1},"options":{"rate_limit":{"per_second":0,"burst":10}}}]}"#
        #expect(self.errors(zero).first?.keyPath == "listeners[0].options.rate_limit.per_second")
    }

    @Test func everyBadListenerIsReportedNotJustTheFirst() {
        let errors = self.errors(
            #"{"listeners":[{"name":"a","protocol":"x","tcp":{"port":1}},{"name":"b","protocol":"echo","tcp":{"port":2},"options":{"k":1}}]}"#
        )
        #expect(errors.map(\.keyPath) == ["listeners[0].protocol", "listeners[1].options.k"])
    }

    @Test func textLogLinesCarryMetadataSortedAndQuotedWhenNeeded() {
        let event = LogEvent(
            level: .info,
            message: "connection closed",
            metadata: nil,
            source: "t",
            file: "f",
            function: "g",
            line: 1
        )
        let line = StderrLogHandler.textLine(
            event: event,
            label: "tulipd",
            metadata: ["peer": "1.2.3.4:5", "listener": "echo", "error": "a b"]
        )
        #expect(line.hasSuffix(#"info tulipd: connection closed error="a b" listener=echo peer=1.2.3.4:5"#))
        let json = StderrLogHandler.jsonLine(event: event, label: "tulipd", metadata: ["listener": "e\"x"])
        #expect(json.contains(#""message":"connection closed""#))
        #expect(json.contains(#""listener":"e\"x""#))
    }
}
