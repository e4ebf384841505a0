"""The evaluation suite: one module per task (privacy, action, bias, reid, tad, anomaly) behind one
interface (task.py), the planning and running of them (suite.py), and the table and plots they produce."""
