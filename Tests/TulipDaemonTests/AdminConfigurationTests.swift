import Testing

@testable import TulipDaemon

struct AdminConfigurationTests {
    private static let listener = #""listeners":[{"name":"a","protocol":"echo","tcp":{"port":1}}]"#

    @Test func adminAndMetricsAreOptionalWithDefaults() throws {
        let none = try DaemonConfigurationTests.parse("{\(Self.listener)}")
        #expect(none.admin == nil)
        #expect(none.metrics == nil)
        let both = try DaemonConfigurationTests.parse(
            #"{"admin":{"path":"/run/tulipd/admin.sock"},"metrics":{"tcp":{"port":9464}},"# + Self.listener + "}"
        )
        #expect(both.admin == AdminConfiguration(path: "/run/tulipd/admin.sock", mode: 0o600))
        #expect(both.metrics == MetricsConfiguration(host: "127.0.0.1", port: 9464))
        let explicit = try DaemonConfigurationTests.parse(
            #"{"admin":{"path":"/a.sock","mode":"0660"},"metrics":{"tcp":{"host":"::1","port":0}},"# + Self.listener
                + "}"
        )
        #expect(explicit.admin?.mode == 0o660)
        #expect(explicit.metrics == MetricsConfiguration(host: "::1", port: 0))
    }

    @Test(
        arguments: [
            (#"{"admin":{},"#, "admin.path", "missing required key 'path'"),
            (#"{"admin":{"path":"/a","mode":"999"},"#, "admin.mode", nil),
            (#"{"admin":{"path":"/a","user":"x"},"#, "admin.user", "unknown key 'user'"),
            (#"{"metrics":{},"#, "metrics.tcp", "missing required key 'tcp'"),
            (#"{"metrics":{"tcp":{"port":70000}},"#, "metrics.tcp.port", nil),
            (#"{"metrics":{"tcp":{"port":1},"udp":{}},"#, "metrics.udp", "unknown key 'udp'"),
        ] as [(String, String, String?)]
    )
    func mistakesNameTheirKeyPath(prefix: String, keyPath: String, message: String?) throws {
        let errors = try DaemonConfigurationTests.schemaErrors(prefix + Self.listener + "}")
        #expect(errors.map(\.keyPath) == [keyPath], "\(errors)")
        if let message { #expect(errors.first?.message == message) }
    }
}
