"""The plot tabs: each a Matplotlib Figure on a FigureCanvasTkAgg (never pyplot), drawn on the Tk thread."""
