// A JMX client, for tests/security_probes.py and the live Cassandra tests (run as a
// single source file: `java JmxProbe.java HOST PORT [USER]`). Without USER it offers
// no credentials; with USER it logs in as USER with the password read from its
// standard input (first line), never from its command line.
// Exit 3: refused by the server's authenticator (a SecurityException, possibly
// wrapped, its message printed after "refused: "); 0: it answered (the MBean count);
// 1: no JMX server answered at all, or another error ("no answer: " and the chain).
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;
import javax.management.remote.JMXConnector;
import javax.management.remote.JMXConnectorFactory;
import javax.management.remote.JMXServiceURL;

public class JmxProbe {
    public static void main(String[] args) throws Exception {
        JMXServiceURL url = new JMXServiceURL(
                "service:jmx:rmi:///jndi/rmi://" + args[0] + ":" + args[1] + "/jmxrmi");
        Map<String, Object> environment = new HashMap<>();
        String who = "without credentials";
        if (args.length > 2) {
            BufferedReader stdin = new BufferedReader(
                    new InputStreamReader(System.in, StandardCharsets.UTF_8));
            String password = stdin.readLine();
            environment.put(JMXConnector.CREDENTIALS,
                            new String[] {args[2], password == null ? "" : password});
            who = "as " + args[2];
        }
        try (JMXConnector connector = JMXConnectorFactory.connect(url, environment)) {
            System.out.println("answered " + who + ": "
                    + connector.getMBeanServerConnection().getMBeanCount() + " MBeans");
            System.exit(0);
        } catch (Exception error) {
            // Cassandra's JMX server wraps its authenticator's SecurityException in a
            // RuntimeException (JMXServerUtils$JMXPluggableAuthenticatorWrapper): the
            // refusal is the SecurityException anywhere in the chain of causes.
            StringBuilder chain = new StringBuilder();
            for (Throwable cause = error; cause != null; cause = cause.getCause()) {
                if (cause instanceof SecurityException) {
                    System.out.println("refused: " + cause.getMessage());
                    System.exit(3);
                }
                chain.append(chain.length() == 0 ? "" : " <- ")
                     .append(cause.getClass().getName()).append(": ").append(cause.getMessage());
            }
            System.out.println("no answer: " + chain);
            System.exit(1);
        }
    }
}
