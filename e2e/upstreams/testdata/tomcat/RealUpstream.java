// A real Tomcat 10.1 upstream for tokengate's end-to-end suites (internal/realupstream):
// Debian's embedded Tomcat with a default HTTP/1.1 connector and servlets mapped the way
// a web.xml would map them. Nothing of Tomcat's request handling is configured, so it
// does what a stock Tomcat does: it strips ";" path parameters, normalizes the path,
// rejects encoded slashes, and so on; that is what the suites want to see.
//
//   java -cp CLASSES:tomcat10-embed-core.jar RealUpstream RECORDS_FILE BASE_DIR
//
// It listens on a free 127.0.0.1 port and then prints
// `REALUPSTREAM READY {"port": N, "version": "..."}` on stdout.

import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.apache.catalina.Context;
import org.apache.catalina.connector.Connector;
import org.apache.catalina.startup.Tomcat;
import org.apache.catalina.util.ServerInfo;

public final class RealUpstream {
    private static OutputStream records;

    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: RealUpstream RECORDS_FILE BASE_DIR");
            System.exit(2);
        }
        // Append mode is O_APPEND: with one write per line (under a lock), a reader
        // never sees two records interleaved.
        records = new FileOutputStream(args[0], true);

        Tomcat tomcat = new Tomcat();
        tomcat.setBaseDir(args[1]);
        Connector connector = new Connector(); // HTTP/1.1, Tomcat's defaults
        connector.setPort(0);
        connector.setProperty("address", "127.0.0.1");
        tomcat.getService().addConnector(connector);

        Context ctx = tomcat.addContext("", args[1]);
        map(ctx, new Health(), "/healthz");
        map(ctx, new Orders(), "/orders", "/orders/*");
        map(ctx, new Recorder("admin"), "/admin/*");
        map(ctx, new Recorder("fallback"), "/");

        tomcat.start();
        String version = "tomcat " + ServerInfo.getServerNumber().replaceFirst("\\.0$", "")
            + " (" + ServerInfo.getServerInfo() + ", java " + System.getProperty("java.version") + ")";
        System.out.println("REALUPSTREAM READY {\"port\": " + connector.getLocalPort()
            + ", \"version\": " + quote(version) + "}");
        System.out.flush();
        tomcat.getServer().await();
    }

    private static void map(Context ctx, HttpServlet servlet, String... patterns) {
        String name = servlet.getClass().getSimpleName() + "@" + patterns[0];
        Tomcat.addServlet(ctx, name, servlet);
        for (String p : patterns) {
            ctx.addServletMappingDecoded(p, name);
        }
    }

    /** Records every request under one route, whatever its method. */
    static class Recorder extends HttpServlet {
        private final String route;

        Recorder(String route) {
            this.route = route;
        }

        // route decides the route by the request; the admin and fallback servlets take
        // every method, so service is overridden rather than doGet and the like.
        String route(HttpServletRequest req) {
            return route;
        }

        @Override
        protected void service(HttpServletRequest req, HttpServletResponse resp) throws IOException {
            long bodyBytes = 0;
            try (InputStream in = req.getInputStream()) {
                byte[] buf = new byte[8192];
                for (int n; (n = in.read(buf)) > 0; ) {
                    bodyBytes += n;
                }
            }
            String json = record(req, route(req), bodyBytes);
            byte[] line = (json + "\n").getBytes(StandardCharsets.UTF_8);
            synchronized (RealUpstream.class) {
                records.write(line);
                records.flush();
            }
            resp.setStatus(200);
            resp.setContentType("application/json");
            resp.setCharacterEncoding("UTF-8");
            resp.getWriter().write(json);
        }
    }

    /** /healthz: GET (and so HEAD) is the health route; any other method falls back. */
    static final class Health extends Recorder {
        Health() {
            super("health");
        }

        @Override
        String route(HttpServletRequest req) {
            String m = req.getMethod();
            return m.equals("GET") || m.equals("HEAD") ? "health" : "fallback";
        }
    }

    /**
     * /orders and /orders/*: one servlet that dispatches by method and path info, the way
     * a REST servlet commonly does: no path info (or "/") is the collection, "/{id}" one
     * order; anything else falls back.
     */
    static final class Orders extends Recorder {
        Orders() {
            super("orders");
        }

        @Override
        String route(HttpServletRequest req) {
            String info = req.getPathInfo();
            boolean collection = info == null || info.equals("/");
            boolean item = !collection && info.indexOf('/', 1) < 0;
            switch (req.getMethod()) {
                case "GET":
                case "HEAD":
                    return item ? "orders.show" : "fallback";
                case "POST":
                    return collection ? "orders.create" : "fallback";
                case "DELETE":
                    return item ? "orders.delete" : "fallback";
                default:
                    return "fallback";
            }
        }
    }

    static String record(HttpServletRequest req, String route, long bodyBytes) {
        String query = req.getQueryString();
        String info = req.getPathInfo();
        Map<String, List<String>> headers = new LinkedHashMap<>();
        for (String name : Collections.list(req.getHeaderNames())) {
            headers.computeIfAbsent(name.toLowerCase(Locale.ROOT), k -> new ArrayList<>())
                .addAll(Collections.list(req.getHeaders(name)));
        }
        StringBuilder h = new StringBuilder("{");
        for (Map.Entry<String, List<String>> e : headers.entrySet()) {
            if (h.length() > 1) {
                h.append(',');
            }
            h.append(quote(e.getKey())).append(":[");
            for (int i = 0; i < e.getValue().size(); i++) {
                h.append(i > 0 ? "," : "").append(quote(e.getValue().get(i)));
            }
            h.append(']');
        }
        h.append('}');
        return "{\"server\":\"tomcat\""
            + ",\"route\":" + quote(route)
            + ",\"method\":" + quote(req.getMethod())
            + ",\"path\":" + quote(req.getServletPath() + (info == null ? "" : info))
            + ",\"target\":" + quote(req.getRequestURI() + (query == null ? "" : "?" + query))
            + ",\"rawQuery\":" + quote(query == null ? "" : query)
            + ",\"proto\":" + quote(req.getProtocol())
            + ",\"host\":" + quote(req.getServerName() + ":" + req.getServerPort())
            + ",\"headers\":" + h
            + ",\"bodyBytes\":" + bodyBytes + "}";
    }

    /** quote is s as a JSON string. */
    static String quote(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"': b.append("\\\""); break;
                case '\\': b.append("\\\\"); break;
                default:
                    if (c < 0x20 || c > 0x7e) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else {
                        b.append(c);
                    }
            }
        }
        return b.append('"').toString();
    }
}
