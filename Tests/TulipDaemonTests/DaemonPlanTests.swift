import Logging
import Testing
import TulipPlugins

@testable import TulipDaemon

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
        #expect(errors.first?.message.contains("chargen, daytime, discard, echo, time") == true)
    }

    @Test(arguments: ["udp", "unix_datagram"])
    func kindsWithoutSupportYetFailTheCheck(kind: String) {
        let body = kind == "udp" ? #"{"port":1}"# : #"{"path":"/tmp/d"}"#
        let errors = self.errors(#"{"listeners":[{"name":"a","protocol":"echo","\#(kind)":\#(body)}]}"#)
        #expect(errors.first?.message.contains("not supported yet") == true)
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
