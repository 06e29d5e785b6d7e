// headrace's logistic model in the browser: P(purchase) from the features() dict, as the API
// computes it (River's StandardScaler + OneHotEncoder + LogisticRegression), from the JSON
// of GET /models/{shard}/{variant}/export. No dependencies; a classic script that defines
// `HeadraceScorer` (also `module.exports` under Node).
//
//   const model = HeadraceScorer.load(await (await fetch(url)).json());
//   model.predict({price: 12.5, category: "yarn", ...});   // a probability
//   model.predictMany(rows);                                // an array of them
(function (root) {
  "use strict";

  const SCHEMA_VERSION = 1;
  const own = (object, key) => Object.prototype.hasOwnProperty.call(object, key);

  function load(doc) {
    if (!doc || doc.schema_version !== SCHEMA_VERSION || doc.format !== "headrace.logreg") {
      throw new Error(
        "headrace scorer: unsupported export (schema_version " +
          (doc && doc.schema_version) + ", this scorer reads " + SCHEMA_VERSION + ")"
      );
    }
    const means = doc.scaler.means;
    const vars = doc.scaler.vars;
    const weights = doc.weights;
    const oneHot = doc.one_hot;
    const intercept = doc.intercept;

    // River's TransformerUnion keeps the numeric side's value when a one-hot key clashes
    // with a numeric feature's name, and counts a one-hot key once.
    function predict(x) {
      let z = intercept;
      const used = new Set();
      for (const name in x) {
        if (!own(x, name)) continue;
        const value = x[name];
        if (typeof value === "number") {
          const v = own(vars, name) ? vars[name] : 0;
          // River: (x - mean) / var ** 0.5 when the variance is not 0, else 0.
          if (v && own(weights, name)) z += ((value - means[name]) / Math.sqrt(v)) * weights[name];
        } else if (typeof value === "string") {
          const key = name + "_" + value;
          if (used.has(key) || (own(x, key) && typeof x[key] === "number")) continue;
          used.add(key);
          if (own(oneHot, key)) z += oneHot[key];
          else if (own(weights, key)) z += weights[key];
        }
      }
      // River's sigmoid: exactly 0 and 1 beyond +-30.
      if (z < -30) return 0;
      if (z > 30) return 1;
      return 1 / (1 + Math.exp(-z));
    }

    return {
      model: doc.model,
      variant: doc.variant,
      epoch: doc.epoch,
      version: doc.version,
      featureConfig: doc.feature_config,
      predict: predict,
      predictMany: (rows) => rows.map(predict),
    };
  }

  const api = { SCHEMA_VERSION: SCHEMA_VERSION, load: load };
  if (typeof module === "object" && module.exports) module.exports = api;
  else root.HeadraceScorer = api;
})(typeof self !== "undefined" ? self : this);
