// A JMX client without credentials, for tests/security_probes.py (run as a single
// source file: `java JmxProbe.java HOST PORT`). Exit 3: refused by the server's
// authenticator (SecurityException); 0: it answered (the MBean count); 1: no JMX
// server answered at all.
import java.util.HashMap;
import javax.management.remote.JMXConnector;
import javax.management.remote.JMXConnectorFactory;
import javax.management.remote.JMXServiceURL;

public class JmxProbe {
    public static void main(String[] args) throws Exception {
        JMXServiceURL url = new JMXServiceURL(
                "service:jmx:rmi:///jndi/rmi://" + args[0] + ":" + args[1] + "/jmxrmi");
        try (JMXConnector connector = JMXConnectorFactory.connect(url, new HashMap<>())) {
            System.out.println("answered without credentials: "
                    + connector.getMBeanServerConnection().getMBeanCount() + " MBeans");
            System.exit(0);
        } catch (SecurityException refused) {
            System.out.println("refused: " + refused.getMessage());
            System.exit(3);
        }
    }
}
